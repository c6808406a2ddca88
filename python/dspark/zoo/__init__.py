"""The micro model zoo: small models dspark builds itself from text every machine has (the Python
standard library's source and documentation), so drafters can be trained and evaluated end to end
with no downloads.

Pipeline: :mod:`corpus` (text, code and prose, with held-out prompts) -> :mod:`tokenizer`
(byte-level BPE) -> :mod:`target` (a small Qwen3-architecture causal LM, resumable training).
"""

from dspark.zoo.corpus import Corpus, build_corpus
from dspark.zoo.target import TargetTrainConfig, train_target
from dspark.zoo.tokenizer import train_tokenizer

__all__ = ["Corpus", "TargetTrainConfig", "build_corpus", "train_target", "train_tokenizer"]
