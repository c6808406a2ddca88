"""Speculative generation on Hugging Face targets with dspark drafters and ``verify_batch``."""

from dspark.generation.speculative import SpeculativeGenerator, generate
from dspark.generation.stats import GenerationOutput, RoundStats, StreamEvent
from dspark.generation.target import TargetRunner

__all__ = [
    "GenerationOutput",
    "RoundStats",
    "SpeculativeGenerator",
    "StreamEvent",
    "TargetRunner",
    "generate",
]
