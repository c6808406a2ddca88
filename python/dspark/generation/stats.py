"""Per-round statistics and the output object of speculative generation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["GenerationOutput", "RoundStats", "StreamEvent", "assemble_output"]


@dataclass
class RoundStats:
    """One draft-verify round over the requests active in it (R of them).

    Attributes
    ----------
    requests : list of int
        Batch index of each active request.
    proposed : list of int
        Drafts sent to verification per request (after any scheduler/threshold cut; tree
        rounds: the number of tree nodes).
    accepted : list of int
        Drafts accepted per request.
    first_rejection : list of int
        1-based position of the first rejected draft, or -1 when every proposed draft survived.
    emitted : list of int
        Tokens appended per request this round (accepted + 1, cut at a stop token).
    depth : list of int
        Most drafts that could be accepted (chain length, or tree depth).
    draft_time, verify_time, wall_time : float
        Seconds spent drafting, in the target forward + verification, and in the whole round.
    confidence : list of list of float, optional
        Per request, the drafter's per-position confidences ``c_1..c_n`` of the verified chain
        (n = ``proposed``); None for drafters without a confidence head and for tree rounds.
    draft_prob : list of list of float, optional
        Per request, the drafter's probability ``q(d_k)`` of each verified draft token (chain
        rounds of a generator built with ``record_draft_probs=True``), else None.
    """

    requests: list[int]
    proposed: list[int]
    accepted: list[int]
    first_rejection: list[int]
    emitted: list[int]
    depth: list[int]
    draft_time: float
    verify_time: float
    wall_time: float
    confidence: list[list[float]] | None = None
    draft_prob: list[list[float]] | None = None


@dataclass
class StreamEvent:
    """Tokens appended to request ``request`` in one round (``finished`` after its last ones)."""

    request: int
    tokens: list[int]
    finished: bool


@dataclass
class GenerationOutput:
    """Result of :func:`dspark.generate`.

    Attributes
    ----------
    sequences : Tensor (B, L + M) int64
        Prompt (as given) followed by the generated tokens, right-padded with ``pad_token_id``
        (M = the longest generation), like ``transformers``' ``generate`` output.
    num_generated : Tensor (B,) int64
        Generated tokens per request.
    rounds : list of RoundStats
    """

    sequences: torch.Tensor
    num_generated: torch.Tensor
    rounds: list[RoundStats] = field(default_factory=list)

    @property
    def acceptance_length(self) -> float:
        """Mean tokens emitted per request-round (tau, including the bonus/correction token)."""
        total = sum(sum(r.emitted) for r in self.rounds)
        count = sum(len(r.emitted) for r in self.rounds)
        return total / count if count else 0.0

    def position_acceptance(self, max_position: int) -> list[float]:
        """Conditional acceptance at 1-based position k.

        Among request-rounds that could accept at least k drafts (chain length or tree depth) and
        accepted the first k-1, the fraction that accepted draft k (NaN when none qualifies).
        """
        from dspark.eval.acceptance import conditional_rates  # eval imports generation

        depth = [p for r in self.rounds for p in r.depth]
        accepted = [a for r in self.rounds for a in r.accepted]
        return conditional_rates(depth, accepted, max_position)


def assemble_output(
    prm: Any, generated: list[list[int]], rounds: list[RoundStats]
) -> GenerationOutput:
    longest = max(len(g) for g in generated)
    out = torch.full((prm.batch, longest), prm.pad_token_id, dtype=torch.int64, device=prm.device)
    for i, g in enumerate(generated):
        if g:
            out[i, : len(g)] = torch.tensor(g, dtype=torch.int64, device=prm.device)
    num = torch.tensor([len(g) for g in generated], dtype=torch.int64)
    return GenerationOutput(torch.cat([prm.input_ids, out], dim=1), num, rounds)
