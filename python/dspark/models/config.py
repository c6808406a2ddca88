"""Drafter configuration: one dataclass for DSpark, DFlash and Eagle3, saved as ``config.json``.

A drafter config records its own hyperparameters and a fingerprint of the target it was built for
(vocabulary, hidden size, layer count, model type), so a checkpoint loaded against another target
fails with a clear message instead of producing garbage drafts.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DRAFTER_KINDS", "DrafterConfig", "default_feature_layers", "target_fingerprint"]

DRAFTER_KINDS = ("dspark", "dflash", "eagle3")
HEAD_TYPES = ("markov", "gated", "rnn")

# Model families whose attention applies a per-head RMSNorm to q and k before RoPE.
_QK_NORM_TYPES = ("qwen3", "qwen3_moe", "gemma3", "gemma3_text", "olmo2")
# Gemma RMSNorm scales by (1 + weight) and its MLP uses a GELU-tanh gate.
_GEMMA_TYPES = ("gemma", "gemma2", "gemma3", "gemma3_text")


def _text_config(target_config: Any) -> Any:
    """Multimodal configs (Gemma3) keep the decoder's fields in ``text_config``."""
    return getattr(target_config, "text_config", None) or target_config


def default_feature_layers(num_layers: int, count: int = 5) -> list[int]:
    """Spread ``count`` feature layers over a target with ``num_layers`` decoder layers.

    Reproduces the reference choice for 36 layers ([1, 9, 17, 25, 33]) and 40 layers
    ([1, 10, 19, 28, 37]): evenly spaced from layer 1 to layer ``num_layers - 3``. The final layer
    is never used (its Hugging Face hidden state is already normalised). Small targets fall back
    to the first ``num_layers - 1`` layers.
    """
    if num_layers < 2:
        raise ValueError(f"target: expected at least 2 decoder layers, got {num_layers}")
    last = num_layers - 3
    if last >= 1 and last - 1 + 1 >= count:
        step = (last - 1) / (count - 1) if count > 1 else 0.0
        return [1 + math.floor(i * step + 0.5) for i in range(count)]
    return list(range(min(count, num_layers - 1)))


def target_fingerprint(target_config: Any) -> dict[str, Any]:
    """The target fields a drafter depends on (checked when a checkpoint is loaded)."""
    c = _text_config(target_config)
    return {
        "model_type": str(getattr(c, "model_type", "")),
        "vocab_size": int(c.vocab_size),
        "hidden_size": int(c.hidden_size),
        "num_hidden_layers": int(c.num_hidden_layers),
    }


@dataclass
class DrafterConfig:
    """Hyperparameters of a drafter plus the fingerprint of its target.

    Attributes
    ----------
    kind : {"dspark", "dflash", "eagle3"}
    target : dict
        :func:`target_fingerprint` of the target the drafter was built for.
    feature_layers : list of int
        0-based target decoder layers whose outputs feed the drafter (-1 = embedding output).
    num_layers : int
        Draft decoder layers (reference: 5 for DSpark/DFlash, 1 for Eagle3).
    block_size : int
        G, drafts per round (DSpark/DFlash: anchor + G - 1 masks give G predictions; Eagle3: the
        number of autoregressive steps and the training-time-test length).
    mask_token_id : int
        Target vocabulary row that initialises the mask embedding.
    learn_mask_embedding : bool
        Keep a trainable copy of the mask embedding (the reference freezes an unused target row,
        so its mask embedding is never learned).
    markov_rank : int
        r, rank of the DSpark sequential head (0 = no head, which is DFlash).
    head_type : {"markov", "gated", "rnn"}
    confidence_head : bool
        DSpark confidence head ``c_k = sigmoid(w . [h_k ; W1[x_{k-1}]] + b)``.
    confidence_uses_markov : bool
        Feed ``W1[x_{k-1}]`` to the confidence head (reference default) or only ``h_k``.
    loss_decay : float
        c in the position weights ``w_k = exp(-(k-1)/c)`` (reference code: 4).
    hidden_size, intermediate_size, num_attention_heads, num_key_value_heads, head_dim : int
        Block geometry; the hidden size must equal the target's (shared embedding and LM head).
    rms_norm_eps, rope : float, dict
    hidden_act : str
    qk_norm, attention_bias, gemma_norm : bool
        Block flavour copied from the target family.
    """

    kind: str
    target: dict[str, Any]
    feature_layers: list[int]
    num_layers: int
    block_size: int
    hidden_size: int
    intermediate_size: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    rms_norm_eps: float = 1e-6
    hidden_act: str = "silu"
    qk_norm: bool = True
    attention_bias: bool = False
    gemma_norm: bool = False
    mask_token_id: int = 0
    learn_mask_embedding: bool = True
    markov_rank: int = 0
    head_type: str = "markov"
    confidence_head: bool = False
    confidence_uses_markov: bool = True
    loss_decay: float = 4.0
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in DRAFTER_KINDS:
            raise ValueError(f"kind: expected one of {DRAFTER_KINDS}, got {self.kind!r}")
        if self.head_type not in HEAD_TYPES:
            raise ValueError(f"head_type: expected one of {HEAD_TYPES}, got {self.head_type!r}")
        for name in ("num_layers", "block_size", "hidden_size", "num_attention_heads", "head_dim"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name}: expected an int >= 1, got {getattr(self, name)!r}")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"num_key_value_heads: expected a divisor of num_attention_heads = "
                f"{self.num_attention_heads}, got {self.num_key_value_heads}"
            )
        if self.markov_rank < 0:
            raise ValueError(f"markov_rank: expected an int >= 0, got {self.markov_rank}")
        if self.kind == "dspark" and self.markov_rank == 0:
            raise ValueError(
                "markov_rank: DSpark needs a sequential head (rank >= 1); use kind='dflash'"
            )
        if self.confidence_head and self.kind != "dspark":
            raise ValueError(
                f"confidence_head: only DSpark has a confidence head, got kind={self.kind!r}"
            )
        vocab, layers = self.target["vocab_size"], self.target["num_hidden_layers"]
        if not 0 <= self.mask_token_id < vocab:
            raise ValueError(f"mask_token_id: expected 0 <= id < {vocab}, got {self.mask_token_id}")
        if not self.feature_layers:
            raise ValueError("feature_layers: expected at least one target layer, got []")
        for i in self.feature_layers:
            if not -1 <= i < layers - 1:
                raise ValueError(
                    f"feature_layers: expected ids in [-1, {layers - 2}] (the final layer "
                    f"{layers - 1} is already normalised by Hugging Face), got {i}"
                )

    @property
    def vocab_size(self) -> int:
        return int(self.target["vocab_size"])

    def position_weights(self, length: int | None = None) -> list[float]:
        """Loss weights ``w_k = exp(-(k-1)/loss_decay)`` for k = 1..length (default block_size)."""
        n = self.block_size if length is None else length
        return [math.exp(-k / self.loss_decay) for k in range(n)]

    @classmethod
    def for_target(cls, kind: str, target_config: Any, **overrides: Any) -> DrafterConfig:
        """Defaults for ``kind`` derived from a Hugging Face target config, then ``overrides``."""
        c = _text_config(target_config)
        model_type = str(getattr(c, "model_type", ""))
        heads = int(c.num_attention_heads)
        head_dim = getattr(c, "head_dim", None) or c.hidden_size // heads
        vocab = int(c.vocab_size)
        if model_type.startswith("qwen3") and vocab == 151936:
            mask = 151669  # first unused row after Qwen3's special tokens (reference choice)
        elif model_type in _GEMMA_TYPES:
            mask = 4
        else:
            pad = getattr(c, "pad_token_id", None)
            mask = int(pad) if isinstance(pad, int) and 0 <= pad < vocab else vocab - 1
        dspark = kind == "dspark"
        values: dict[str, Any] = {
            "kind": kind,
            "target": target_fingerprint(c),
            "feature_layers": default_feature_layers(int(c.num_hidden_layers)),
            "num_layers": 1 if kind == "eagle3" else 5,
            "block_size": 7,
            "hidden_size": int(c.hidden_size),
            "intermediate_size": int(c.intermediate_size),
            "num_attention_heads": heads,
            "num_key_value_heads": int(getattr(c, "num_key_value_heads", None) or heads),
            "head_dim": int(head_dim),
            "rms_norm_eps": float(getattr(c, "rms_norm_eps", 1e-6)),
            "hidden_act": str(
                getattr(c, "hidden_activation", None) or getattr(c, "hidden_act", "silu")
            ),
            "qk_norm": model_type in _QK_NORM_TYPES,
            "attention_bias": bool(getattr(c, "attention_bias", False)),
            "gemma_norm": model_type in _GEMMA_TYPES,
            "mask_token_id": mask,
            "markov_rank": 256 if dspark else 0,
            "confidence_head": dspark,
        }
        unknown = set(overrides) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise TypeError(f"overrides: unknown drafter options {sorted(unknown)}")
        if overrides.get("hidden_size", values["hidden_size"]) != values["hidden_size"]:
            raise ValueError(
                f"hidden_size: the drafter shares the target's embedding and LM head, so it must "
                f"be {values['hidden_size']}, got {overrides['hidden_size']}"
            )
        values.update(overrides)
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DrafterConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"config.json: unknown fields {sorted(unknown)}")
        return cls(**d)

    def check_target(self, target_config: Any, what: str = "drafter") -> None:
        """Raise a ValueError when ``target_config`` is not the target the drafter was built for."""
        got = target_fingerprint(target_config)
        bad = [k for k in ("vocab_size", "hidden_size") if got[k] != self.target[k]]
        if self.target["num_hidden_layers"] != got["num_hidden_layers"]:
            bad.append("num_hidden_layers")
        if bad:
            exp = ", ".join(f"{k}={self.target[k]}" for k in bad)
            have = ", ".join(f"{k}={got[k]}" for k in bad)
            raise ValueError(
                f"target: this {what} was built for a target with {exp} (feature layers "
                f"{self.feature_layers}), got a target with {have}"
            )
