"""Confidence-scheduled verification: the prefix scheduler (Algorithm 1) and its async variant.

The maths is ``docs/algorithms.md`` section 4 (Algorithm 1, its early stop, and the asynchronous
top-K variant). The walk runs in C++ (``csrc/scheduler``); this module holds the typed API. The
step-rate curve and its helpers live in :mod:`dspark.scheduler.sps` and are re-exported here.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from dspark import _C
from dspark._checks import as_int, as_int_tensor
from dspark.scheduler.sps import LoadMonitor, SpsTable, profile_sps

__all__ = [
    "AsyncPrefixScheduler",
    "LoadMonitor",
    "PrefixScheduler",
    "ScheduleResult",
    "SpsTable",
    "profile_sps",
]


class ScheduleResult(NamedTuple):
    """Lengths chosen for one step, with the walk's summary."""

    lengths: torch.Tensor  # [R] int32
    tokens: int  # B = R + sum(lengths)
    expected_tokens: float  # tau = R + sum of admitted survivals
    objective: float  # tau * SPS(B), expected tokens per second


def _as_confidences(confidences: object) -> torch.Tensor:
    if isinstance(confidences, np.ndarray):
        confidences = torch.from_numpy(confidences)
    if not isinstance(confidences, torch.Tensor):
        raise TypeError(f"confidences: expected a torch.Tensor, got {type(confidences).__name__}")
    if not confidences.dtype.is_floating_point:
        dtype = str(confidences.dtype).removeprefix("torch.")
        raise TypeError(f"confidences: expected a floating tensor, got {dtype}")
    if confidences.dim() != 2:
        raise ValueError(f"confidences: expected shape (R, G), got {tuple(confidences.shape)}")
    if confidences.shape[0] < 1:
        shape = tuple(confidences.shape)
        raise ValueError(
            f"confidences: empty batch: expected shape (R, G) with R >= 1, got {shape}"
        )
    # The walk is host code: a CUDA tensor is copied (one small D2H per step).
    c = confidences.detach().to("cpu", torch.float32)
    # Unit stride along G, and rows that do not overlap (expanded tensors have stride 0).
    ok = c.stride(-1) == 1 and (c.shape[0] == 1 or c.stride(0) >= c.shape[1])
    return c if ok else c.contiguous()


def _as_caps(
    max_lengths: object, num_requests: int, name: str = "max_lengths"
) -> torch.Tensor | None:
    if max_lengths is None:
        return None
    if isinstance(max_lengths, int) and not isinstance(max_lengths, bool):
        return torch.full(
            (num_requests,),
            as_int(name, max_lengths, -(2**31), 2**31 - 1),
            dtype=torch.int32,
        )
    if not isinstance(max_lengths, torch.Tensor) or max_lengths.dtype not in (
        torch.int32,
        torch.int64,
    ):
        raise TypeError(f"{name}: expected an int or an int32/int64 tensor of shape (R,)")
    if max_lengths.shape != (num_requests,):
        raise ValueError(
            f"{name}: expected shape ({num_requests},), got {tuple(max_lengths.shape)}"
        )
    return as_int_tensor(name, max_lengths.detach().cpu())


def _with_remaining(
    caps: torch.Tensor | None, remaining_tokens: object, num_requests: int
) -> torch.Tensor | None:
    """Fold a remaining-token budget into the caps: a step emits accepted + 1 tokens, so a
    request with n tokens left may verify at most n - 1 drafts."""
    if remaining_tokens is None:
        return caps
    rem = _as_caps(remaining_tokens, num_requests, "remaining_tokens")
    assert rem is not None
    if bool((rem < 1).any()):
        bad = int(torch.nonzero(rem < 1)[0, 0])
        raise ValueError(
            f"remaining_tokens: expected values >= 1, got remaining_tokens[{bad}] = {int(rem[bad])}"
        )
    rem = rem - 1
    return rem if caps is None else torch.minimum(caps, rem)


def _budget(token_budget: int | None) -> int:
    if token_budget is None:
        return -1
    if isinstance(token_budget, bool) or not isinstance(token_budget, int) or token_budget < 1:
        raise ValueError(f"token_budget: expected a positive int or None, got {token_budget!r}")
    return as_int("token_budget", token_budget, 1, 2**63 - 1)


class PrefixScheduler:
    """Per-request verification lengths that maximise expected tokens per second (Algorithm 1).

    Parameters
    ----------
    sps : SpsTable or LoadMonitor
        The engine's step-rate curve; a monitor is read once per call.
    early_stop : bool
        Stop the walk at the first admission that does not raise the objective. Required for
        lossless verification (``docs/algorithms.md`` section 4); ``False`` searches the whole
        order for the best prefix and exists only to demonstrate the bias.

    Examples
    --------
    >>> import torch, dspark
    >>> sps = dspark.SpsTable([1, 16, 64], [100.0, 98.0, 60.0])
    >>> sched = dspark.PrefixScheduler(sps)
    >>> sched.schedule(torch.tensor([[0.9, 0.9, 0.2], [0.3, 0.9, 0.9]])).tolist()
    [3, 3]
    >>> heavy = dspark.PrefixScheduler(dspark.SpsTable([1, 2, 8], [100.0, 70.0, 20.0]))
    >>> heavy.schedule(torch.tensor([[0.9, 0.9, 0.2], [0.3, 0.9, 0.9]])).tolist()
    [1, 0]
    """

    def __init__(self, sps: SpsTable | LoadMonitor, early_stop: bool = True) -> None:
        if not isinstance(sps, (SpsTable, LoadMonitor)):
            raise TypeError(f"sps: expected an SpsTable or LoadMonitor, got {type(sps).__name__}")
        self.sps = sps
        self._impl = _C.PrefixScheduler(sps._impl, bool(early_stop))

    @property
    def early_stop(self) -> bool:
        """Whether the lossless early stop is on."""
        return bool(self._impl.early_stop)

    def schedule(
        self,
        confidences: torch.Tensor,
        *,
        max_lengths: torch.Tensor | int | None = None,
        remaining_tokens: torch.Tensor | int | None = None,
        token_budget: int | None = None,
    ) -> torch.Tensor:
        """Choose how many draft tokens each request verifies this step.

        Parameters
        ----------
        confidences : Tensor (R, G) float
            Per-position conditional confidences ``c[r, j]`` in [0, 1] (calibrated), the
            probability that draft j survives given that drafts < j survived.
        max_lengths : Tensor (R,) int32/int64 or int, optional
            Per-request caps (e.g. the drafts actually available).
        remaining_tokens : Tensor (R,) int32/int64 or int, optional
            Tokens each request may still emit (>= 1); caps lengths at ``remaining_tokens - 1``
            because a step emits the accepted drafts plus one token.
        token_budget : int, optional
            Cap on the tokens of the verification step, ``R + sum(lengths)``.

        Returns
        -------
        Tensor (R,) int32
            Prefix lengths in 0..G.

        Raises
        ------
        ValueError
            NaN or out-of-range confidences, an empty batch, bad caps.
        TypeError
            Non-tensor or non-floating confidences.
        """
        return self.schedule_with_summary(
            confidences,
            max_lengths=max_lengths,
            remaining_tokens=remaining_tokens,
            token_budget=token_budget,
        ).lengths

    def schedule_with_summary(
        self,
        confidences: torch.Tensor,
        *,
        max_lengths: torch.Tensor | int | None = None,
        remaining_tokens: torch.Tensor | int | None = None,
        token_budget: int | None = None,
    ) -> ScheduleResult:
        """Like :meth:`schedule`, also returning B, tau and tau * SPS(B)."""
        c = _as_confidences(confidences)
        out = torch.empty(c.shape[0], dtype=torch.int32)
        caps = _with_remaining(_as_caps(max_lengths, c.shape[0]), remaining_tokens, c.shape[0])
        b, tau, obj = self._impl.schedule(c, caps, _budget(token_budget), out)
        return ScheduleResult(out, int(b), float(tau), float(obj))

    def capacity(
        self,
        confidences: torch.Tensor,
        *,
        max_lengths: torch.Tensor | int | None = None,
        token_budget: int | None = None,
    ) -> int:
        """Asynchronous stage 1: best draft-token count K from (stale) confidences (global search).

        Returns
        -------
        int
            K >= 0, the number of draft tokens to verify in a later step.
        """
        c = _as_confidences(confidences)
        caps = _as_caps(max_lengths, c.shape[0])
        return int(self._impl.capacity(c, caps, _budget(token_budget)))

    def admit_top_k(
        self,
        confidences: torch.Tensor,
        capacity: int,
        *,
        max_lengths: torch.Tensor | int | None = None,
        token_budget: int | None = None,
    ) -> torch.Tensor:
        """Asynchronous stage 2: admit the global top-``capacity`` candidates by current survival.

        Returns
        -------
        Tensor (R,) int32
            Prefix lengths; ``sum <= capacity``.
        """
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 0:
            raise ValueError(f"capacity: expected an int >= 0, got {capacity!r}")
        c = _as_confidences(confidences)
        out = torch.empty(c.shape[0], dtype=torch.int32)
        caps = _as_caps(max_lengths, c.shape[0])
        self._impl.admit_top_k(c, capacity, caps, _budget(token_budget), out)
        return out


class AsyncPrefixScheduler:
    """The production (asynchronous) variant: capacity from confidences ``delay`` steps back.

    Step ``t`` admits the global top-K candidates by current survival, where K was computed from
    the confidences of step ``t - delay`` (the causal barrier: K cannot depend on the tokens being
    verified now, so no early stop is needed and step-shaped curves are handled). Until ``delay``
    steps have been seen, K comes from the early-stopping walk on the current confidences.

    Parameters
    ----------
    sps : SpsTable or LoadMonitor
        The engine's step-rate curve (target forward only when ``draft_seconds`` is given).
    delay : int
        Steps between the confidences that set K and the step that uses it (>= 1; 2 in the paper).
    draft_seconds : float
        Cost of running the drafter in a step. When positive (``sps`` must then be an
        SpsTable), the plan is made on the curve ``T(B) + draft_seconds`` and K is set to 0 when
        not drafting at all (``R * SPS(R)``) would be faster; ``next_capacity == 0`` then tells
        the engine it may skip the drafter.
    """

    def __init__(
        self, sps: SpsTable | LoadMonitor, delay: int = 2, draft_seconds: float = 0.0
    ) -> None:
        if isinstance(delay, bool) or not isinstance(delay, int) or delay < 1:
            raise ValueError(f"delay: expected an int >= 1, got {delay!r}")
        if not (draft_seconds >= 0 and np.isfinite(draft_seconds)):
            raise ValueError(f"draft_seconds: expected a finite value >= 0, got {draft_seconds}")
        engine: SpsTable | LoadMonitor = sps
        if draft_seconds > 0:
            if not isinstance(sps, SpsTable):
                raise TypeError("sps: draft_seconds > 0 needs an SpsTable of the target forward")
            engine = SpsTable.from_step_times(
                sps.tokens,
                [t + draft_seconds for t in sps.step_times],
                sps.interpolation,  # type: ignore[arg-type]
            )
        self.sps = sps  # the target's curve (an engine refines a LoadMonitor here)
        self.draft_seconds = float(draft_seconds)
        self._planner = PrefixScheduler(engine, early_stop=False)
        self._fallback = PrefixScheduler(engine, early_stop=True)
        self.delay = delay
        self._pending: list[int] = []

    def _plan(self, confidences: torch.Tensor, max_lengths: torch.Tensor | None) -> int:
        res = self._planner.schedule_with_summary(confidences, max_lengths=max_lengths)
        num_req = int(res.lengths.shape[0])
        no_draft = self.draft_seconds > 0 and isinstance(self.sps, SpsTable)
        if no_draft and num_req / self.sps.step_time(num_req) >= res.objective:
            return 0  # drafting costs more than the best admission gains
        return res.tokens - num_req

    @property
    def next_capacity(self) -> int | None:
        """K that the next :meth:`step` will use (None during warm-up). Known before drafting,
        so an engine may skip drafting when it is 0 (see :meth:`skip`)."""
        return self._pending[0] if len(self._pending) >= self.delay else None

    def skip(self) -> None:
        """Advance one step without drafting (e.g. ``next_capacity == 0``): the pending K is
        consumed and the latest known capacity is carried forward, since no new confidences exist.
        Engines should still draft now and then (a probe) so that the capacity can recover."""
        if len(self._pending) >= self.delay:
            self._pending.pop(0)
        self._pending.append(self._pending[-1] if self._pending else 0)

    def step(
        self,
        confidences: torch.Tensor,
        *,
        max_lengths: torch.Tensor | int | None = None,
        remaining_tokens: torch.Tensor | int | None = None,
        token_budget: int | None = None,
    ) -> torch.Tensor:
        """Lengths for this step (Tensor (R,) int32); records this step's capacity for later.

        ``max_lengths``, ``remaining_tokens`` and ``token_budget`` cap this step as in
        :meth:`PrefixScheduler.schedule` (the budget applies to this step's admission only; the
        recorded capacity is the unconstrained plan)."""
        c = _as_confidences(confidences)
        caps = _with_remaining(_as_caps(max_lengths, c.shape[0]), remaining_tokens, c.shape[0])
        if len(self._pending) >= self.delay:
            k = self._pending.pop(0)
            lengths = self._planner.admit_top_k(c, k, max_lengths=caps, token_budget=token_budget)
        else:
            lengths = self._fallback.schedule(c, max_lengths=caps, token_budget=token_budget)
        self._pending.append(self._plan(c, caps))
        return lengths
