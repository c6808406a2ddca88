"""Public ops (thin, documented wrappers over the native core)."""

from dspark.ops.draft_step import DraftStepResult, draft_step
from dspark.ops.tree import (
    tree_attention_mask,
    tree_from_choices,
    tree_from_sglang,
    tree_positions,
    tree_query_layout,
)
from dspark.ops.verify import VerifyResult, verify_batch
from dspark.ops.verify_attention import verify_attention

__all__ = [
    "DraftStepResult",
    "VerifyResult",
    "draft_step",
    "tree_attention_mask",
    "tree_from_choices",
    "tree_from_sglang",
    "tree_positions",
    "tree_query_layout",
    "verify_attention",
    "verify_batch",
]
