"""The micro model zoo: small models dspark builds itself from text every machine has (the Python
standard library's source and documentation), so drafters can be trained and evaluated end to end
with no downloads. The built zoo ships in the package; :func:`load_zoo` loads it.

Pipeline (``dspark zoo build``): :mod:`corpus` (code and prose, with held-out prompts) ->
:mod:`tokenizer` (byte-level BPE) -> :mod:`target` (a small Qwen3-architecture causal LM) ->
:mod:`drafters` (target-sampled data; DSpark, DFlash and Eagle3 trained with
:mod:`dspark.training`; a small assistant LM) -> :mod:`package` (export with a checksum manifest).
"""

from dspark.zoo.corpus import Corpus, build_corpus
from dspark.zoo.package import ZOO_DIR, Zoo, export_zoo, load_zoo, verify_zoo
from dspark.zoo.target_lm import TargetTrainConfig, train_target
from dspark.zoo.tokenizer import train_tokenizer

__all__ = [
    "ZOO_DIR",
    "Corpus",
    "TargetTrainConfig",
    "Zoo",
    "build_corpus",
    "export_zoo",
    "load_zoo",
    "train_target",
    "train_tokenizer",
    "verify_zoo",
]
