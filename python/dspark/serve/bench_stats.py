"""Pure metric computations of ``dspark bench serve``: per-request records -> a run's summary.

Nothing here talks to a server: :func:`summarize` turns :class:`RequestRecord` objects into
throughput, latency percentiles and goodput, :func:`parse_metrics` reads a Prometheus text page
and :func:`spec_stats` diffs two of them into acceptance statistics, so all of it is unit-tested
on plain values.

Latency definitions (the ones vLLM's and SGLang's serving benchmarks use):

- TTFT: request sent -> first chunk carrying text.
- ITL: gap between consecutive text chunks. A speculative server sends one chunk per engine step,
  and a step can carry several tokens, so ITL here is *per chunk*, not per token.
- TPOT: ``(e2e - ttft) / (output_tokens - 1)``, per request (undefined for one token).
- E2E: request sent -> end of the stream.

Percentiles are numpy's (linear interpolation); ITL percentiles pool every gap of every
successful request, the others are over requests.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["SLO", "RequestRecord", "parse_metrics", "percentile_stats", "spec_stats", "summarize"]

# Prometheus sample names (see the serve contract); counters carry the ``_total`` suffix.
DRAFT = "dspark_spec_draft_tokens_total"
ACCEPTED = "dspark_spec_accepted_tokens_total"
VERIFY_COUNT = "dspark_spec_verify_length_count"
VERIFY_SUM = "dspark_spec_verify_length_sum"

MetricSamples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@dataclass
class RequestRecord:
    """What the client saw of one request (times in seconds).

    Attributes
    ----------
    index : int
        Issue order within the run.
    start : float
        Send time, relative to the start of the run.
    ok : bool
        The stream ended with ``data: [DONE]`` and no error.
    cancelled : bool
        Still in flight when the run's duration limit was reached.
    status : int or None
        HTTP status (None when the connection failed).
    error : str or None
        Error message (server's ``error.message``, or the client exception).
    chunk_times : list of float
        Arrival of every chunk carrying text, relative to ``start``.
    output_tokens : int
        ``usage.completion_tokens`` when the server sent usage, else the number of text chunks.
    prompt_tokens : int or None
        ``usage.prompt_tokens`` when sent.
    e2e : float or None
        Send -> end of stream, for completed streams.
    """

    index: int
    start: float = 0.0
    ok: bool = False
    cancelled: bool = False
    status: int | None = None
    error: str | None = None
    chunk_times: list[float] = field(default_factory=list)
    output_tokens: int = 0
    prompt_tokens: int | None = None
    e2e: float | None = None

    @property
    def ttft(self) -> float | None:
        """Time to the first text chunk."""
        return self.chunk_times[0] if self.chunk_times else None

    @property
    def itl(self) -> list[float]:
        """Gaps between consecutive text chunks."""
        return [b - a for a, b in zip(self.chunk_times[:-1], self.chunk_times[1:], strict=True)]

    @property
    def tpot(self) -> float | None:
        """``(e2e - ttft) / (output_tokens - 1)``; None for fewer than two tokens."""
        if self.e2e is None or self.ttft is None or self.output_tokens < 2:
            return None
        return (self.e2e - self.ttft) / (self.output_tokens - 1)


@dataclass(frozen=True)
class SLO:
    """Latency objectives for goodput, in milliseconds (None: no bound on that metric)."""

    ttft_ms: float | None = None
    tpot_ms: float | None = None

    def met_by(self, rec: RequestRecord) -> bool:
        """Whether a successful request meets every bound (a one-token request meets TPOT)."""
        if self.ttft_ms is not None and (rec.ttft is None or 1e3 * rec.ttft > self.ttft_ms):
            return False
        tpot = rec.tpot
        return self.tpot_ms is None or tpot is None or 1e3 * tpot <= self.tpot_ms


def percentile_stats(values: Sequence[float], name: str, scale: float = 1e3) -> dict[str, Any]:
    """``{name}_mean_ms``, ``_p50_ms``, ``_p99_ms`` of ``values * scale`` (None if empty)."""
    keys = (f"{name}_mean_ms", f"{name}_p50_ms", f"{name}_p99_ms")
    if len(values) == 0:
        return dict.fromkeys(keys)
    a = np.asarray(values, dtype=np.float64) * scale
    p50, p99 = np.percentile(a, [50, 99])
    return dict(zip(keys, (float(a.mean()), float(p50), float(p99)), strict=True))


def summarize(
    records: Sequence[RequestRecord], duration: float, slo: SLO | None = None
) -> dict[str, Any]:
    """Throughput, latency statistics and goodput of one run.

    Parameters
    ----------
    records : sequence of RequestRecord
        Every request the run issued (completed, failed or cancelled).
    duration : float
        Wall time of the run in seconds (first send -> last completion or the duration limit).
    slo : SLO, optional
        Bounds for ``goodput_req_s`` (successful requests per second meeting both); without
        any bound goodput is None.

    Returns
    -------
    dict
        ``issued``, ``completed``, ``errors``, ``cancelled``, ``duration_s``,
        ``request_throughput`` (completed/s), ``output_tok_s``, ``input_tok_s`` (None when the
        server sent no usage), ``total_output_tokens``, ``total_input_tokens``, mean/p50/p99 in
        ms of ``ttft``, ``tpot``, ``itl`` and ``e2e``, ``goodput_req_s``, ``slo_ttft_ms``,
        ``slo_tpot_ms``, ``error_status`` (count per HTTP status, ``"exception"`` for failed
        connections) and ``error_samples`` (up to three distinct messages).
    """
    if not duration > 0:
        raise ValueError(f"duration: expected > 0 seconds, got {duration}")
    ok = [r for r in records if r.ok]
    failed = [r for r in records if not r.ok and not r.cancelled]
    out_tokens = sum(r.output_tokens for r in ok)
    prompt_tokens = [r.prompt_tokens for r in ok if r.prompt_tokens is not None]
    in_tokens = sum(prompt_tokens) if ok and len(prompt_tokens) == len(ok) else None
    slo = slo or SLO()
    has_slo = slo.ttft_ms is not None or slo.tpot_ms is not None
    summary: dict[str, Any] = {
        "issued": len(records),
        "completed": len(ok),
        "errors": len(failed),
        "cancelled": sum(r.cancelled for r in records),
        "duration_s": float(duration),
        "request_throughput": len(ok) / duration,
        "output_tok_s": out_tokens / duration,
        "input_tok_s": None if in_tokens is None else in_tokens / duration,
        "total_output_tokens": out_tokens,
        "total_input_tokens": in_tokens,
    }
    summary.update(percentile_stats([r.ttft for r in ok if r.ttft is not None], "ttft"))
    summary.update(percentile_stats([t for r in ok if (t := r.tpot) is not None], "tpot"))
    summary.update(percentile_stats([g for r in ok for g in r.itl], "itl"))
    summary.update(percentile_stats([r.e2e for r in ok if r.e2e is not None], "e2e"))
    summary["goodput_req_s"] = sum(slo.met_by(r) for r in ok) / duration if has_slo else None
    summary["slo_ttft_ms"], summary["slo_tpot_ms"] = slo.ttft_ms, slo.tpot_ms
    statuses = Counter("exception" if r.status is None else str(r.status) for r in failed)
    summary["error_status"] = dict(sorted(statuses.items()))
    summary["error_samples"] = list(dict.fromkeys(str(r.error) for r in failed))[:3]
    return summary


def parse_metrics(text: str) -> MetricSamples:
    """Every sample of a Prometheus text page: ``{(sample name, sorted labels): value}``.

    Raises
    ------
    ValueError
        The text is not in the Prometheus exposition format.
    """
    from prometheus_client.parser import text_string_to_metric_families

    out: MetricSamples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = float(s.value)
    return out


def _by_position(samples: Mapping[Any, float], name: str) -> dict[int, float]:
    out = {}
    for (sample, labels), value in samples.items():
        pos = dict(labels).get("position")
        if sample == name and pos is not None and pos.isdigit():
            out[int(pos)] = value
    return out


def spec_stats(before: MetricSamples | None, after: MetricSamples | None) -> dict[str, Any]:
    """Speculation statistics of a run from the ``/metrics`` samples before and after it.

    Per-position acceptance is ``accepted[i] / draft[i]`` (``i`` = 1..G, the ``position``
    label): the conditional rate, as ``dspark serve`` counts a draft at position i only when
    verification reached it (every draft before it accepted). The overall
    ``draft_acceptance_rate`` is ``sum(accepted) / sum(draft)``; the mean acceptance length
    per verified (request, step) is
    ``1 + sum(accepted) / verify_steps`` (a step always yields the target's own token), with
    ``verify_steps`` the count of ``dspark_spec_verify_length``. Every field is None when a
    page or a metric is missing (a peer server), when nothing was verified, or when a counter
    went down (the server restarted).

    Returns
    -------
    dict
        ``mean_acceptance_length``, ``per_position_acceptance`` (list, position 1 first; None
        where nothing was drafted), ``draft_acceptance_rate``, ``draft_tokens``,
        ``accepted_tokens``, ``verify_steps``, ``mean_verify_length`` (mean chosen k).
    """
    keys = "draft_acceptance_rate draft_tokens accepted_tokens verify_steps mean_verify_length"
    none: dict[str, Any] = {"mean_acceptance_length": None, "per_position_acceptance": None}
    none.update(dict.fromkeys(keys.split()))
    if before is None or after is None:
        return none
    d0, d1 = _by_position(before, DRAFT), _by_position(after, DRAFT)
    a0, a1 = _by_position(before, ACCEPTED), _by_position(after, ACCEPTED)
    vc = (VERIFY_COUNT, ())
    vs = (VERIFY_SUM, ())
    if not d1 or not a1 or vc not in after or vs not in after:
        return none
    positions = range(1, max(d1) + 1)
    draft = [d1.get(i, 0.0) - d0.get(i, 0.0) for i in positions]
    acc = [a1.get(i, 0.0) - a0.get(i, 0.0) for i in positions]
    steps = after[vc] - before.get(vc, 0.0)
    ksum = after[vs] - before.get(vs, 0.0)
    if min(*draft, *acc, steps, ksum) < 0:
        return none
    out = dict(none)
    out["per_position_acceptance"] = [
        a / d if d > 0 else None for a, d in zip(acc, draft, strict=True)
    ]
    out["draft_tokens"], out["accepted_tokens"] = sum(draft), sum(acc)
    out["verify_steps"] = steps
    out["draft_acceptance_rate"] = sum(acc) / sum(draft) if sum(draft) > 0 else None
    if steps > 0:
        out["mean_acceptance_length"] = 1.0 + sum(acc) / steps
        out["mean_verify_length"] = ksum / steps
    return out
