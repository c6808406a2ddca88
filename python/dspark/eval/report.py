"""Evaluation results: per-method summaries, the results table, markdown/JSON and plots."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dspark.eval.acceptance import RoundRecord, acceptance_summary, threshold_sweep
from dspark.utils.io import atomic_write, atomic_write_json, load_json

__all__ = ["EvalReport", "MethodResult", "summarise_method"]


@dataclass
class MethodResult:
    """One method on one benchmark.

    Attributes
    ----------
    method, kind : str
        Name, and ``"baseline"``, ``"plain"``, ``"drafter"``, ``"assisted"`` or
        ``"prompt_lookup"``.
    prompts, new_tokens : int
    seconds : float
        Wall time of all its batches (prefill included).
    tokens_per_s : float
    speedup : float
        tokens/s over target-only decoding (``target.generate``) on the same prompts (NaN
        without the baseline).
    speedup_vs_plain : float
        tokens/s over target-only decoding on the drafters' engine (NaN without
        ``EvalConfig.plain``).
    draft_seconds, verify_seconds : float
        Of ``seconds``: drafting, and target forward + verification (drafters only).
    acceptance : dict, optional
        :func:`dspark.eval.acceptance_summary` (drafters only).
    calibration : dict, optional
        Confidence diagnostics before/after STS (drafters with a confidence head).
    sweep : list of dict, optional
        :func:`dspark.eval.threshold_sweep` rows.
    outputs : list of list of int, optional
        Each prompt's generated token ids, in prompt order (not serialised).
    """

    method: str
    kind: str
    prompts: int
    new_tokens: int
    seconds: float
    tokens_per_s: float
    speedup: float = math.nan
    speedup_vs_plain: float = math.nan
    draft_seconds: float = math.nan
    verify_seconds: float = math.nan
    acceptance: dict[str, Any] | None = None
    calibration: dict[str, Any] | None = None
    sweep: list[dict[str, float]] | None = None
    notes: list[str] = field(default_factory=list)
    # Raw pooled rounds (for plots); not serialised.
    records: list[RoundRecord] | None = field(default=None, repr=False)
    outputs: list[list[int]] | None = field(default=None, repr=False)


def _calibration(records: list[list[RoundRecord]], block: int) -> dict[str, Any]:
    """ECE/AUC/Brier per position before and after STS.

    STS is fitted on the rounds of even-numbered prompts and scored on the odd-numbered ones
    (held out), so "after" is not an in-sample number; with a single prompt both use it all.
    """
    from dspark.calibration import calibration_report, sts

    def matrix(recs: list[RoundRecord]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        conf = np.full((len(recs), block), 0.5)
        for i, r in enumerate(recs):
            c = r.confidence
            assert c is not None  # the caller passes records with confidences only
            conf[i, : len(c)] = c[:block]
        acc = np.array([min(r.accepted, block) for r in recs])
        prop = np.array([min(r.proposed, block) for r in recs])
        return conf, acc, prop

    fit = [r for recs in records[0::2] for r in recs if r.proposed > 0]
    held = [r for recs in records[1::2] for r in recs if r.proposed > 0]
    split = "held-out (fit on even prompts, scored on odd prompts)"
    if not held:
        held, split = fit, "in-sample (one prompt)"
    if not fit:
        return {"note": "no rounds with drafts"}
    fc, fa, fprop = matrix(fit)
    temps = sts(fc, fa, proposed=fprop).temperatures
    hc, ha, hprop = matrix(held)
    rep = calibration_report(hc, ha, temperatures=temps, proposed=hprop)
    rep["temperatures"] = temps.tolist()
    rep["split"] = split
    return rep


def summarise_method(
    name: str, kind: str, payloads: list[dict[str, Any]], block: int | None, cfg: Any
) -> MethodResult:
    """Pool per-prompt payloads into a :class:`MethodResult`."""
    tokens = sum(int(p["new_tokens"]) for p in payloads)
    secs = sum(float(p["time"]) for p in payloads)
    res = MethodResult(name, kind, len(payloads), tokens, secs, tokens / secs if secs > 0 else 0.0)
    if all("tokens" in p for p in payloads):
        res.outputs = [[int(t) for t in p["tokens"]] for p in payloads]
    if kind != "drafter" or block is None:
        return res
    res.draft_seconds = sum(float(p.get("draft_time", math.nan)) for p in payloads)
    res.verify_seconds = sum(float(p.get("verify_time", math.nan)) for p in payloads)
    per_prompt = [[RoundRecord.from_json(r) for r in p["rounds"]] for p in payloads]
    flat = [r for recs in per_prompt for r in recs]
    res.records = flat
    res.acceptance = acceptance_summary(flat, block)
    drafted = [r for r in flat if r.proposed > 0]
    if drafted and all(r.confidence is not None for r in drafted):
        res.calibration = _calibration(per_prompt, block)
        res.sweep = threshold_sweep(flat, cfg.thresholds, mode=cfg.threshold_mode)
    return res


def _fmt(x: Any, nd: int = 2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.{nd}f}" if isinstance(x, float) else str(x)


def _clean(obj: Any) -> Any:
    """JSON-safe: NaN/inf -> None (strict JSON has no NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


@dataclass
class EvalReport:
    """Results of :func:`dspark.eval.evaluate`.

    Attributes
    ----------
    results : dict benchmark -> dict method -> MethodResult
    notes : list of str
        Skipped peers, recomputed cache entries, missing plotting support.
    config : dict
    """

    results: dict[str, dict[str, MethodResult]]
    notes: list[str]
    config: dict[str, Any]

    def table(self) -> list[dict[str, Any]]:
        """One row per (benchmark, method): tau, proposal length, acceptance rate, tokens/s,
        speedup; plus a ``macro`` row per method averaging tau and speedup over benchmarks."""
        rows: list[dict[str, Any]] = []
        per_method: dict[str, list[dict[str, Any]]] = {}
        for bench, methods in self.results.items():
            for m, r in methods.items():
                acc = r.acceptance or {}
                row = {
                    "benchmark": bench,
                    "method": m,
                    "tau": acc.get("tau", math.nan),
                    "proposed": acc.get("proposed", math.nan),
                    "acceptance_rate": acc.get("acceptance_rate", math.nan),
                    "tokens_per_s": r.tokens_per_s,
                    "speedup": r.speedup,
                }
                rows.append(row)
                per_method.setdefault(m, []).append(row)
        if len(self.results) > 1:
            for m, rs in per_method.items():
                macro: dict[str, Any] = {"benchmark": "macro", "method": m}
                for k in ("tau", "proposed", "acceptance_rate", "tokens_per_s", "speedup"):
                    vals = [r[k] for r in rs if not math.isnan(r[k])]
                    macro[k] = float(np.mean(vals)) if vals else math.nan
                rows.append(macro)
        return rows

    def format_table(self) -> str:
        """:meth:`table` as aligned plain text (for terminals and demos)."""
        cols = [
            "benchmark",
            "method",
            "tau",
            "proposed",
            "acceptance_rate",
            "tokens_per_s",
            "speedup",
        ]
        cells = [cols] + [[_fmt(r[c]) for c in cols] for r in self.table()]
        widths = [max(len(row[i]) for row in cells) for i in range(len(cols))]
        lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return _clean(
            {
                "config": self.config,
                "notes": self.notes,
                "table": self.table(),
                "results": {
                    b: {
                        m: {k: v for k, v in r.__dict__.items() if k not in ("records", "outputs")}
                        for m, r in ms.items()
                    }
                    for b, ms in self.results.items()
                },
            }
        )

    def to_markdown(self) -> str:
        """The results table, then per-benchmark acceptance, calibration and sweep tables."""
        cols = [
            "benchmark",
            "method",
            "tau",
            "proposed",
            "acceptance_rate",
            "tokens_per_s",
            "speedup",
        ]
        out = ["# dspark evaluation", ""]
        cfg = self.config
        out.append(
            f"temperature {cfg.get('temperature')}, max_new_tokens {cfg.get('max_new_tokens')}, "
            f"batch size {cfg.get('batch_size')}, seed {cfg.get('seed')}. tau = tokens per round "
            "including the bonus; speedup = tokens/s over target-only decoding (same prompts, same "
            "process). Target-only and Hugging Face peers (batch size 1) report speed only."
        )
        out += ["", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        for row in self.table():
            out.append("| " + " | ".join(_fmt(row[c]) for c in cols) + " |")
        for bench, methods in self.results.items():
            for m, r in methods.items():
                if r.acceptance is None:
                    continue
                acc = r.acceptance
                g = len(acc["conditional"])
                share = ""
                if r.seconds > 0 and not math.isnan(r.draft_seconds):
                    share = (
                        f" Time: {100 * r.draft_seconds / r.seconds:.0f}% drafting, "
                        f"{100 * r.verify_seconds / r.seconds:.0f}% target forward + verify."
                    )
                out += [
                    "",
                    f"## {bench} / {m}",
                    "",
                    f"{acc['rounds']} rounds; verify rate {_fmt(acc['verify_rate'], 3)}.{share}",
                    "",
                    "| position | " + " | ".join(str(k) for k in range(1, g + 1)) + " |",
                    "|" + "---|" * (g + 1),
                    "| conditional acceptance | "
                    + " | ".join(_fmt(x, 3) for x in acc["conditional"])
                    + " |",
                    "| cumulative survival | "
                    + " | ".join(_fmt(x, 3) for x in acc["survival"])
                    + " |",
                ]
                cal = r.calibration
                if cal and "before" in cal:
                    out += [
                        "",
                        f"Confidence calibration, {cal['split']}:",
                        "",
                        "| position | " + " | ".join(map(str, cal["position"])) + " |",
                        "|" + "---|" * (len(cal["position"]) + 1),
                    ]
                    for when in ("before", "after"):
                        for k in ("ece", "auc", "brier"):
                            out.append(
                                f"| {k.upper()} {when} STS | "
                                + " | ".join(_fmt(x, 3) for x in cal[when][k])
                                + " |"
                            )
                if r.sweep:
                    out += [
                        "",
                        f"Threshold sweep ({cfg.get('threshold_mode')}):",
                        "",
                        "| threshold | drafts/step | accepted/step | rejected/step | "
                        "tokens/step | acceptance rate |",
                        "|---|---|---|---|---|---|",
                    ]
                    for s in r.sweep:
                        out.append(
                            f"| {s['threshold']:.2f} | {_fmt(s['proposed'])} | "
                            f"{_fmt(s['accepted'])} | {_fmt(s['rejected'])} | "
                            f"{_fmt(s['tokens_per_step'])} | {_fmt(s['acceptance_rate'], 3)} |"
                        )
        if self.notes:
            out += ["", "## Notes", ""] + [f"- {n}" for n in self.notes]
        return "\n".join(out) + "\n"

    def save(self, output_dir: str | os.PathLike[str], *, plots: bool = True) -> list[Path]:
        """Write ``report.md``, ``report.json`` and (optionally) plots; returns the paths."""
        root = Path(output_dir)
        root.mkdir(parents=True, exist_ok=True)
        paths = []
        if plots:
            from dspark.eval.plots import save_plots

            try:
                paths += save_plots(self, root)
            except ImportError as e:
                self.notes.append(f"plots skipped: {e}")
        md = root / "report.md"
        text = self.to_markdown()
        atomic_write(md, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
        atomic_write_json(root / "report.json", self.to_json(), indent=None)
        return [md, root / "report.json", *paths]


def load_report_json(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a saved ``report.json`` (a plain dict; ValueError naming the file if unreadable)."""
    return load_json(path)
