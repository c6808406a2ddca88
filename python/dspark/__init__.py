"""dspark: speculative-decoding toolkit.

Lossless batched verification (:func:`verify_batch`), tree helpers, and the building blocks for
drafters, scheduling and evaluation. The native core is torch-free (tensors cross as DLPack);
``import dspark`` works without a GPU or CUDA driver.
"""

from __future__ import annotations

# torch first: its libgomp then serves dspark's OpenMP regions too (one thread pool).
import torch  # noqa: F401

from dspark import calibration
from dspark._backend import backends, cuda_available
from dspark.generation import SpeculativeGenerator, generate
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
from dspark.sampling_params import SamplingParams
from dspark.scheduler import LoadMonitor, PrefixScheduler, SpsTable

__version__ = "0.1.0"

__all__ = [
    "DraftStepResult",
    "LoadMonitor",
    "PrefixScheduler",
    "SamplingParams",
    "SpeculativeGenerator",
    "SpsTable",
    "VerifyResult",
    "__version__",
    "backends",
    "calibration",
    "cuda_available",
    "draft_step",
    "generate",
    "tree_attention_mask",
    "tree_from_choices",
    "tree_from_sglang",
    "tree_positions",
    "tree_query_layout",
    "verify_attention",
    "verify_batch",
]
