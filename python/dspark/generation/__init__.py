"""Speculative generation on Hugging Face targets with dspark drafters and ``verify_batch``."""

from dspark.generation.api import generate
from dspark.generation.speculative import SpeculativeGenerator
from dspark.generation.stats import GenerationOutput, RoundStats, StreamEvent
from dspark.generation.target_runner import TargetRunner
from dspark.ops.static_tree import StaticTree

__all__ = [
    "GenerationOutput",
    "RoundStats",
    "SpeculativeGenerator",
    "StaticTree",
    "StreamEvent",
    "TargetRunner",
    "generate",
]
