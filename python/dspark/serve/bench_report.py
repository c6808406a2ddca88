"""Reports of ``dspark bench serve``: the table, the JSON file and the sweep plot.

The plot (output tok/s and TPOT p50 against concurrency, one line per mode and K) imports
matplotlib lazily (``pip install 'dspark[plot]'``) and draws on the Agg canvas without pyplot,
so no global backend state is touched.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dspark.serve.bench import BenchConfig, BenchResult

__all__ = ["format_table", "plot_sweep", "run_label", "write_json"]

_COLUMNS = (
    ("mode", "mode", "{}"),
    ("k", "k", "{}"),
    ("conc", "concurrency", "{}"),
    ("ok", "completed", "{}"),
    ("err", "errors", "{}"),
    ("req/s", "request_throughput", "{:.2f}"),
    ("out tok/s", "output_tok_s", "{:.1f}"),
    ("TTFT p50", "ttft_p50_ms", "{:.1f}"),
    ("TTFT p99", "ttft_p99_ms", "{:.1f}"),
    ("TPOT p50", "tpot_p50_ms", "{:.2f}"),
    ("TPOT p99", "tpot_p99_ms", "{:.2f}"),
    ("ITL p50", "itl_p50_ms", "{:.2f}"),
    ("E2E p50", "e2e_p50_ms", "{:.0f}"),
    ("goodput", "goodput_req_s", "{:.2f}"),
    ("acc len", "mean_acceptance_length", "{:.2f}"),
)


def format_table(runs: Sequence[BenchResult]) -> str:
    """A markdown table, one row per run (latencies in ms, ``-`` where undefined)."""
    rows = [r.to_json() for r in runs]
    lines = ["| " + " | ".join(h for h, _, _ in _COLUMNS) + " |"]
    lines.append("|" + "|".join("---" if i < 2 else "---:" for i in range(len(_COLUMNS))) + "|")
    for row in rows:
        cells = ["-" if row[key] is None else fmt.format(row[key]) for _, key, fmt in _COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_json(
    path: str | Path,
    runs: Sequence[BenchResult],
    cfg: BenchConfig,
    skipped: Sequence[dict[str, Any]] = (),
) -> Path:
    """``{"runs": [...], "skipped": [...], "config": {...}}`` (no API key) at ``path``."""
    conf = {k: v for k, v in dataclasses.asdict(cfg).items() if k != "api_key"}
    for key in ("request_rate", "duration_limit"):
        conf[key] = None if math.isinf(conf[key]) else conf[key]
    doc = {"runs": [r.to_json() for r in runs], "skipped": list(skipped), "config": conf}
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    return p


def run_label(mode: str, k: int | None) -> str:
    """``"fixed K=3"``, ``"none"``, ``"scheduler"``, ``"server"``."""
    return mode if k is None else f"{mode} K={k}"


def plot_sweep(runs: Sequence[Mapping[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Save a PNG of two panels, one line per mode (and K) over the runs' concurrencies.

    Parameters
    ----------
    runs : sequence of mapping
        Rows of the JSON report (``BenchResult.to_json()``): ``mode``, ``k``, ``concurrency``,
        ``output_tok_s``, ``tpot_p50_ms`` (None points are left out).
    path : path-like
        Output file (parent directories are created).

    Returns
    -------
    Path
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("the sweep plot needs matplotlib: pip install 'dspark[plot]'") from e
    if not runs:
        raise ValueError("runs: expected at least one run to plot, got none")
    lines: dict[str, list[Mapping[str, Any]]] = {}
    for r in runs:
        lines.setdefault(run_label(r["mode"], r["k"]), []).append(r)
    fig = Figure(figsize=(10, 4))
    FigureCanvasAgg(fig)
    ax_tps, ax_tpot = fig.subplots(1, 2)
    for label, rows in lines.items():
        rows = sorted(rows, key=lambda r: r["concurrency"])
        for ax, key in ((ax_tps, "output_tok_s"), (ax_tpot, "tpot_p50_ms")):
            pts = [(r["concurrency"], r[key]) for r in rows if r.get(key) is not None]
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="o", label=label)
    concurrencies = sorted({r["concurrency"] for r in runs})
    for ax, ylabel in ((ax_tps, "output tokens/s"), (ax_tpot, "TPOT p50 (ms)")):
        if concurrencies[-1] >= 8 * concurrencies[0]:
            ax.set_xscale("log", base=2)
        ax.set_xticks(concurrencies, [str(c) for c in concurrencies])
        ax.set_xlabel("concurrency")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    ax_tps.set_title("throughput")
    ax_tpot.set_title("time per output token")
    ax_tps.legend(fontsize=8)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    return out
