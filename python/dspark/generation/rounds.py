"""Host-side bookkeeping of the speculative loop: one device read per round.

The loop's per-request state that only the host needs (tokens generated so far, limits, stop
sets, who is active) lives in Python lists, so scheduling a round reads nothing from the device.
After verification :func:`read_round` copies everything the host needs from that round (accepted
lengths, emitted tokens and, when they are still on the device, the drafter's confidences) in
one transfer; :class:`Emitter` turns it into :class:`StreamEvent` s.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch

from dspark.generation.inputs import RequestParams
from dspark.generation.stats import StreamEvent

__all__ = ["Emitter", "RoundRead", "read_round"]


class RoundRead(NamedTuple):
    """A round's verification results on the host."""

    accepted: list[int]
    tokens: list[list[int]]  # the emitted tokens (accepted drafts, then the final token)
    confidence: list[list[float]] | None


def read_round(tokens: torch.Tensor, conf: torch.Tensor | None) -> RoundRead:
    """One device-to-host copy of a round's ``tokens (R, D + 1)`` (verify_batch's emitted tokens,
    -1 padded) and, if given, ``conf (R, G)`` float32 (carried bit for bit as int32).

    Every active request emits ``accept_len + 1 >= 1`` tokens (its ``max_emit`` is >= 1), so the
    accepted lengths are read off the padding instead of copied separately.
    """
    tok = tokens if tokens.dtype == torch.int32 else tokens.to(torch.int32)
    if conf is None:
        rows = tok.tolist()
        conf_h = None
    else:
        bits = conf.to(torch.float32).contiguous().view(torch.int32)
        host = torch.cat([tok, bits], dim=1).cpu()
        rows = host[:, : tok.shape[1]].tolist()
        conf_h = host[:, tok.shape[1] :].contiguous().view(torch.float32).tolist()
    emitted = [[t for t in r if t >= 0] for r in rows]
    return RoundRead([max(len(e) - 1, 0) for e in emitted], emitted, conf_h)


class Emitter:
    """Tokens generated per request, cut at stop tokens and at ``max_new_tokens`` (host only)."""

    def __init__(self, prm: RequestParams) -> None:
        self.stop_sets = prm.stop_sets
        self.max_new = [int(x) for x in prm.max_new_tokens.tolist()]
        self.done = [0] * prm.batch

    def remaining(self, reqs: Sequence[int]) -> list[int]:
        """Tokens each of ``reqs`` may still emit."""
        return [self.max_new[r] - self.done[r] for r in reqs]

    def emit(self, reqs: Sequence[int], tokens: Sequence[list[int]]) -> list[StreamEvent]:
        """Append ``tokens[i]`` to request ``reqs[i]`` (cut after a stop token)."""
        events = []
        for req, new in zip(reqs, tokens, strict=True):
            stops = self.stop_sets[req]
            stop_at = next((i for i, t in enumerate(new) if t in stops), None) if stops else None
            if stop_at is not None:
                new = new[: stop_at + 1]
            self.done[req] += len(new)
            end = stop_at is not None or self.done[req] >= self.max_new[req]
            events.append(StreamEvent(req, list(new), end))
        return events
