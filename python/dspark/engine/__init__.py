"""dspark's engine core: a paged KV cache and a model runner over it.

``paged_cache`` (pages, free list, per-request tables, O(1) rollback) -> ``attention`` (how a
packed paged step plugs into an unmodified Hugging Face model) -> ``runner`` (packs a step, runs
target or drafter, returns only the logits rows verification needs and the feature layers) ->
``engine`` (continuous batching: admission, chunked prefill, preemption, one verify per step).
"""

from __future__ import annotations

from dspark.engine.engine import Engine
from dspark.engine.paged_cache import OutOfPages, PagedKVCache
from dspark.engine.request import FinishReason, Request, RequestOutput
from dspark.engine.runner import ModelRunner, RunnerOutput, StepRequest

__all__ = [
    "Engine",
    "FinishReason",
    "ModelRunner",
    "OutOfPages",
    "PagedKVCache",
    "Request",
    "RequestOutput",
    "RunnerOutput",
    "StepRequest",
]
