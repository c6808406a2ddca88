"""Drafters built on Hugging Face decoder-only targets: DSpark, DFlash and Eagle3.

Example
-------
>>> from dspark.models import build_drafter                       # doctest: +SKIP
>>> drafter = build_drafter("dspark", target, num_layers=2)      # doctest: +SKIP
>>> drafter.save_pretrained("ckpt/")                             # doctest: +SKIP
>>> drafter = Drafter.from_pretrained("ckpt/", target)           # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from dspark.models.base import Drafter, Proposal
from dspark.models.config import DRAFTER_KINDS, DrafterConfig, default_feature_layers
from dspark.models.dflash import BlockTrainOutput, DFlashDrafter, block_targets
from dspark.models.dspark import DSparkDrafter
from dspark.models.eagle3 import Eagle3Drafter, Eagle3TrainOutput
from dspark.models.features import target_features
from dspark.models.sampling import MarkovSample, markov_sample, process_logits

__all__ = [
    "BlockTrainOutput",
    "DFlashDrafter",
    "DSparkDrafter",
    "Drafter",
    "DrafterConfig",
    "Eagle3Drafter",
    "Eagle3TrainOutput",
    "MarkovSample",
    "Proposal",
    "block_targets",
    "build_drafter",
    "default_feature_layers",
    "load_drafter",
    "load_target",
    "markov_sample",
    "process_logits",
    "target_features",
]


def build_drafter(kind: str, target: Any, **overrides: Any) -> Drafter:
    """A freshly initialised drafter for a loaded Hugging Face target.

    Parameters
    ----------
    kind : {"dspark", "dflash", "eagle3"}
    target : PreTrainedModel
        Decoder-only causal LM (Qwen3 first; Llama/Qwen2/Gemma-style blocks through the same
        code). Its embedding, LM head and RoPE are shared (frozen, never copied).
    **overrides
        Any :class:`DrafterConfig` field, e.g. ``num_layers=2``, ``block_size=5``,
        ``feature_layers=[1, 5, 9]``, ``markov_rank=64``, ``head_type="rnn"``.

    Returns
    -------
    Drafter
        On the target's device and dtype.

    Raises
    ------
    ValueError
        Unknown kind, invalid option values, or a target that is not a decoder-only LM.
    TypeError
        Unknown option names.
    """
    if kind not in DRAFTER_KINDS:
        raise ValueError(f"kind: expected one of {DRAFTER_KINDS}, got {kind!r}")
    if not hasattr(target, "config") or not hasattr(target, "get_input_embeddings"):
        raise TypeError(
            f"target: expected a Hugging Face PreTrainedModel, got {type(target).__name__}"
        )
    cfg = DrafterConfig.for_target(kind, target.config, **overrides)
    return Drafter.registry[kind](cfg, target)


def load_drafter(path: Any, target: Any) -> Drafter:
    """Load any drafter saved with ``save_pretrained`` (same as ``Drafter.from_pretrained``)."""
    return Drafter.from_pretrained(path, target)


def load_target(path: Any, *, dtype: Any = None, device: Any = None) -> Any:
    """Load a Hugging Face causal LM from a local directory (never downloads), in eval mode.

    Parameters
    ----------
    path : path-like
        Directory written by ``save_pretrained`` (config.json + weights).
    dtype : torch.dtype, optional
        Default: the checkpoint's dtype.
    device : str or torch.device, optional

    Raises
    ------
    FileNotFoundError
        ``path`` is not a directory with a ``config.json``.
    """
    from pathlib import Path

    from transformers import AutoModelForCausalLM

    if not (Path(path) / "config.json").is_file():
        raise FileNotFoundError(f"path: {path} is not a local model directory (no config.json)")
    model = AutoModelForCausalLM.from_pretrained(
        str(path), local_files_only=True, dtype=dtype if dtype is not None else "auto"
    )
    if device is not None:
        model = model.to(device)
    return model.eval()
