"""How many tokens to draft this step (0: skip drafting), learned online from the engine itself.

The prefix scheduler chooses each request's verify length from the drafter's confidences, but
the drafter has already paid for drafting ``G`` tokens by then, and on a machine where drafting
or verifying costs real time (a CPU, a loaded GPU) that cost decides whether speculation pays.
:class:`DraftHorizon` picks the horizon ``h`` (draft ``h`` tokens, the scheduler then verifies
a prefix of them) that maximises expected tokens per second,

    rate(h) = R * (1 + sum_{j<=h} prod_{i<=j} alpha_i) / (draft(h) + T(R * (1 + h))),
    rate(0) = R / T(R),

from three online estimates: the conditional acceptance ``alpha_i`` of each draft position (an
exponential moving average of what verification accepted), the drafting cost ``draft(h) = a +
b h`` (a forgetting least-squares fit of measured propose times; committing the target's
features to the drafter is owed for every kept token whatever ``h`` is, so it is left out) and
the verification step cost ``T(B)`` (the engine's :class:`dspark.LoadMonitor`). Every
``probe_every``-th step drafts one token further than the choice, so estimates of the positions
it does not use stay current and a drafter that starts paying (lighter load, an easier prompt)
is noticed; while drafting stays off, the probe interval doubles (up to 8x) so a drafter that
does not pay costs almost nothing. The choice depends only
on past steps, never on the current drafts' outcome, so verification stays lossless.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

__all__ = ["DraftHorizon"]


class DraftHorizon:
    """Online choice of the drafting horizon ``h`` in ``0..max_k``.

    Parameters
    ----------
    max_k : int
        The drafter's block size ``G``.
    rate : float
        EMA weight of each new observation, in (0, 1].
    probe_every : int
        Every this many choices, draft one position beyond the choice (0 disables); doubled
        after each probe while the choice stays 0, up to ``8 * probe_every``.
    prior : float
        Initial conditional acceptance of every position (optimistic: drafting is tried).
    """

    def __init__(
        self, max_k: int, *, rate: float = 0.1, probe_every: int = 24, prior: float = 0.6
    ) -> None:
        if max_k < 1:
            raise ValueError(f"max_k: expected >= 1, got {max_k}")
        if not 0.0 < rate <= 1.0:
            raise ValueError(f"rate: expected a value in (0, 1], got {rate}")
        self.max_k, self.rate, self.probe_every = max_k, rate, probe_every
        self.alpha = [float(prior)] * max_k
        self._fit = [0.0, 0.0, 0.0, 0.0, 0.0]  # EMA weight, h, s, h*h, h*s
        self.num_choices = 0
        self._interval, self._since_probe = probe_every, 0

    def draft_cost(self, h: int) -> float:
        """Estimated seconds to draft ``h`` tokens for the current batch (0 before any data)."""
        w, mh, ms, mhh, mhs = self._fit
        if h <= 0 or w <= 0:
            return 0.0
        mh, ms, mhh, mhs = mh / w, ms / w, mhh / w, mhs / w
        var = mhh - mh * mh
        if var < 1e-6 * max(mhh, 1e-12):  # one horizon seen so far: cost proportional to h
            return ms / max(mh, 1e-12) * h
        b = max((mhs - mh * ms) / var, 0.0)
        return max(ms - b * mh, 0.0) + b * h

    def expected_tokens(self, num_requests: int, h: int) -> float:
        total, surv = 1.0, 1.0
        for a in self.alpha[:h]:
            surv *= a
            total += surv
        return num_requests * total

    def choose(self, num_requests: int, step_time: Callable[[float], float]) -> int:
        """The horizon for a step of ``num_requests`` decoding requests; ``step_time(B)`` is the
        verification step's cost for ``B`` tokens (seconds)."""
        r = num_requests
        best_h, best = 0, r / max(step_time(r), 1e-9)
        for h in range(1, self.max_k + 1):
            cost = self.draft_cost(h) + step_time(r * (1 + h))
            rate = self.expected_tokens(r, h) / max(cost, 1e-9)
            if rate > best:
                best_h, best = h, rate
        self.num_choices += 1
        if best_h > 0:
            self._interval = self.probe_every
        self._since_probe += 1
        if self.probe_every and self._since_probe >= self._interval:
            self._since_probe = 0
            if best_h == 0:  # drafting is off: probe ever more rarely while it stays off
                self._interval = min(2 * self._interval, 8 * self.probe_every)
            return min(best_h + 1, self.max_k)
        return best_h

    def observe_draft(self, h: int, seconds: float) -> None:
        """One propose call of horizon ``h`` took ``seconds``."""
        lam, f = self.rate, self._fit
        obs = (1.0, float(h), seconds, float(h * h), h * seconds)
        for i, v in enumerate(obs):
            f[i] = (1 - lam) * f[i] + lam * v

    def observe_verify(self, lengths: Sequence[int], accepted: Sequence[int]) -> None:
        """Verification of one step: request ``i`` verified ``lengths[i]`` drafts and accepted
        the first ``accepted[i]``. Position ``p`` was tested when ``p <= accepted``."""
        for p in range(self.max_k):
            tested = [a > p for k, a in zip(lengths, accepted, strict=True) if k > p and a >= p]
            if tested:
                lam = min(1.0, self.rate * len(tested))
                self.alpha[p] = (1 - lam) * self.alpha[p] + lam * sum(tested) / len(tested)
