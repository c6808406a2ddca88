"""dspark: speculative-decoding toolkit.

Lossless batched verification (:func:`verify_batch`), tree helpers, and the building blocks for
drafters, scheduling and evaluation. The native core is torch-free (tensors cross as DLPack);
``import dspark`` works without a GPU or CUDA driver.
"""

from __future__ import annotations

# torch first: its libgomp then serves dspark's OpenMP regions too (one thread pool).
import torch  # noqa: F401

from dspark._backend import backends, cuda_available
from dspark.ops.tree import tree_attention_mask, tree_from_choices, tree_from_sglang
from dspark.ops.tree import tree_positions, tree_query_layout
from dspark.ops.verify_attention import verify_attention
from dspark.ops.verify import VerifyResult, verify_batch

__version__ = "0.1.0"

__all__ = [
    "VerifyResult",
    "__version__",
    "backends",
    "cuda_available",
    "tree_attention_mask",
    "tree_from_choices",
    "tree_from_sglang",
    "tree_positions",
    "tree_query_layout",
    "verify_attention",
    "verify_batch",
]
