"""Training configuration (a JSON file for ``dspark train --config``), validated on load."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dspark.models.config import DRAFTER_KINDS

__all__ = ["TrainConfig", "default_alphas"]


def default_alphas(kind: str) -> tuple[float, float, float]:
    """Reference loss weights (ce, tv, conf): DSpark 0.1/0.9/1.0, DFlash 1/0/0."""
    return (0.1, 0.9, 1.0) if kind == "dspark" else (1.0, 0.0, 0.0)


@dataclass
class TrainConfig:
    """Everything a training run needs; defaults follow docs/algorithms.md section 6.1.

    Attributes
    ----------
    kind : {"dspark", "dflash", "eagle3"}
    target : str
        Local Hugging Face model directory (frozen embedding, LM head, RoPE; online mode).
    output_dir : str
        Checkpoints (``step-NNNNNNNN/``, ``latest``) and ``log.jsonl``.
    cache : str, optional
        Target cache directory (offline mode). Exactly one of ``cache`` and ``data``.
    data : str, optional
        Conversations JSONL for online mode (the target runs inside the training loop).
    drafter : dict
        :class:`dspark.models.DrafterConfig` overrides (``num_layers``, ``block_size``, ...).
    global_batch, micro_batch : int
        Sequences per optimizer step (all processes) and per forward on one process; gradient
        accumulation is ``global_batch / (world_size * micro_batch)``.
    fsdp : bool
        Shard the drafter's parameters, gradients and optimizer state over processes (FSDP2)
        instead of replicating them; checkpoints are the same either way.
    """

    kind: str
    target: str
    output_dir: str
    cache: str | None = None
    data: str | None = None
    drafter: dict[str, Any] = field(default_factory=dict)
    epochs: int = 10
    max_steps: int | None = None
    global_batch: int = 512
    micro_batch: int = 1
    lr: float = 6e-4
    warmup_ratio: float = 0.04
    min_lr_ratio: float = 0.0
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float = 1.0
    num_anchors: int = 512
    alphas: tuple[float, float, float] | None = None
    step_decay: float = 0.8
    loss_chunk: int = 64
    block_chunk: int | None = None
    precision: str = "auto"
    seed: int = 42
    save_every: int = 3000
    log_every: int = 10
    max_length: int = 4096
    system_prompt: str | None = None
    progress: bool = True
    fsdp: bool = False

    def __post_init__(self) -> None:
        if self.kind not in DRAFTER_KINDS:
            raise ValueError(f"kind: expected one of {DRAFTER_KINDS}, got {self.kind!r}")
        if (self.cache is None) == (self.data is None):
            raise ValueError(
                "cache/data: expected exactly one (cache = offline, data = online), got "
                f"cache={self.cache!r}, data={self.data!r}"
            )
        for name in (
            "epochs",
            "global_batch",
            "micro_batch",
            "num_anchors",
            "loss_chunk",
            "save_every",
            "log_every",
            "max_length",
        ):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}: expected an int >= 1, got {v!r}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps: expected an int >= 1 or null, got {self.max_steps!r}")
        if not self.lr > 0:
            raise ValueError(f"lr: expected > 0, got {self.lr}")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"warmup_ratio: expected a value in [0, 1), got {self.warmup_ratio}")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ValueError(
                f"precision: expected 'auto', 'fp32' or 'bf16', got {self.precision!r}"
            )
        if self.alphas is None:
            self.alphas = default_alphas(self.kind)
        alphas = tuple(float(a) for a in self.alphas)
        self.alphas = alphas  # type: ignore[assignment]
        self.betas = tuple(float(b) for b in self.betas)  # type: ignore[assignment]
        if len(alphas) != 3 or min(alphas) < 0:
            raise ValueError(f"alphas: expected three weights >= 0, got {alphas}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"config: unknown fields {unknown} (known: {sorted(names)})")
        missing = sorted(
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
            and f.name not in d
        )
        if missing:
            raise ValueError(f"config: missing required fields {missing}")
        return cls(**d)

    @classmethod
    def from_file(cls, path: str | Path) -> TrainConfig:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"config: {p} does not exist")
        try:
            d = json.loads(p.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"config: {p} is not valid JSON ({e.msg})") from None
        return cls.from_dict(d)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
