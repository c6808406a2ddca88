"""Settings of an evaluation run (:class:`EvalConfig`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from dspark.eval.peers import PEERS

__all__ = ["EvalConfig"]


@dataclass
class EvalConfig:
    """Settings of an evaluation run (defaults: the reference protocol, scaled down).

    Attributes
    ----------
    max_new_tokens : int
        Per prompt (reference: 2048).
    temperature : float
        Target and drafts (reference 1.0; 0 = greedy).
    seed : int
        A batch starting at prompt index i is seeded with ``seed + i`` (reference: 980406).
    batch_size : int
        Prompts per batch (the reference is 1). Results depend on the batch composition, which
        is fixed by the file order, so resumed runs reproduce them.
    max_samples : int, optional
        Prompts per file (random subset, reference: e.g. 500 for GSM8K).
    num_draft_tokens : int, optional
        Drafts per round (default: each drafter's block size).
    thresholds : sequence of float
        Static confidence thresholds for the sweep (drafters with a confidence head).
    threshold_mode : {"cumulative", "per_position"}
        Cut the proposal where the cumulative (dspark) or per-position (reference code)
        confidence drops below the threshold.
    online_thresholds : sequence of float
        Also run each drafter that has a confidence head with the generator's
        ``confidence_threshold=t`` (cumulative survival), as a method named ``"name@t"``: the
        threshold sweep with wall-clock numbers.
    baseline : bool
        Time target-only decoding (``target.generate``) for the speedup column.
    plain : bool
        Also time target-only decoding on the drafters' own runner (method ``"plain"``,
        :func:`dspark.generation.plain.plain_generate`) for ``speedup_vs_plain``: the ratio
        that isolates speculation from the runtime.
    engine : {"auto", "paged", "hf"}
        Where the drafters and ``plain`` run the target (as ``SpeculativeGenerator``'s
        ``engine``; ``"auto"``: dspark's paged engine core when the target supports it).
    peers : sequence of {"assisted", "prompt_lookup"}
        Hugging Face peers to time (batch size 1; skipped with a note when not applicable).
    prompt_lookup_num_tokens : int
    chat_template : bool
        Format text prompts with the tokenizer's chat template when it has one.
    resume : bool
        Reuse valid cached per-prompt results in ``output_dir``.
    progress : bool
        tqdm progress bars.
    warmup : bool
        One short untimed generation per method before timing.
    """

    max_new_tokens: int = 256
    temperature: float = 1.0
    seed: int = 980406
    batch_size: int = 1
    max_samples: int | None = None
    num_draft_tokens: int | None = None
    thresholds: Sequence[float] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
    threshold_mode: str = "cumulative"
    online_thresholds: Sequence[float] = ()
    baseline: bool = True
    plain: bool = False
    engine: str = "auto"
    peers: Sequence[str] = ()
    prompt_lookup_num_tokens: int = 10
    chat_template: bool = True
    resume: bool = True
    progress: bool = True
    warmup: bool = True

    def check(self) -> None:
        for name in ("max_new_tokens", "batch_size", "prompt_lookup_num_tokens"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name}: expected >= 1, got {getattr(self, name)}")
        if not self.temperature >= 0:
            raise ValueError(f"temperature: expected >= 0, got {self.temperature}")
        bad = [t for t in self.online_thresholds if not 0.0 <= float(t) <= 1.0]
        if bad:
            raise ValueError(f"online_thresholds: expected values in [0, 1], got {bad}")
        if self.engine not in ("auto", "paged", "hf"):
            raise ValueError(f"engine: expected 'auto', 'paged' or 'hf', got {self.engine!r}")
        unknown = [p for p in self.peers if p not in PEERS]
        if unknown:
            raise ValueError(f"peers: expected names from {PEERS}, got {unknown}")
        if self.threshold_mode not in ("cumulative", "per_position"):
            raise ValueError(
                f"threshold_mode: expected 'cumulative' or 'per_position', got "
                f"{self.threshold_mode!r}"
            )
