"""Public ops (thin, documented wrappers over the native core)."""

from dspark.ops.draft_step import DraftStepResult, draft_step
from dspark.ops.tree import tree_attention_mask, tree_from_choices, tree_from_sglang
from dspark.ops.verify import VerifyResult, verify_batch

__all__ = [
    "DraftStepResult",
    "draft_step",
    "VerifyResult",
    "tree_attention_mask",
    "tree_from_choices",
    "tree_from_sglang",
    "verify_batch",
]
