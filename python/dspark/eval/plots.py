"""Evaluation plots: conditional acceptance per position, reliability diagrams, threshold sweep.

matplotlib is imported lazily (``pip install 'dspark[plot]'``); figures are built without pyplot
so no global backend state is touched.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["save_plots"]


def _figure(**kw: Any) -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("evaluation plots need matplotlib: pip install 'dspark[plot]'") from e
    return Figure(**kw)


def save_plots(report: Any, root: Path) -> list[Path]:
    """Save the plots of an :class:`~dspark.eval.EvalReport` under ``root``; returns the paths.

    - ``acceptance_<benchmark>.png``: conditional acceptance per position, one line per drafter;
    - ``reliability_<benchmark>_<method>.png``: raw vs STS-calibrated survival (DSpark);
    - ``sweep_<benchmark>_<method>.png``: acceptance rate and drafts/step per threshold.
    """
    from dspark.calibration import plot_reliability
    from dspark.eval.result_cache import _safe

    paths = []
    for bench, methods in report.results.items():
        drafters = {m: r for m, r in methods.items() if r.acceptance is not None}
        if drafters:
            fig = _figure(figsize=(5, 3.5))
            ax = fig.subplots()
            for m, r in drafters.items():
                cond = r.acceptance["conditional"]
                ax.plot(
                    range(1, len(cond) + 1),
                    cond,
                    marker="o",
                    label=f"{m} (tau {r.acceptance['tau']:.2f})",
                )
            ax.set_xticks(
                range(1, max(len(r.acceptance["conditional"]) for r in drafters.values()) + 1)
            )
            ax.set_xlabel("draft position k")
            ax.set_ylabel("P(accept k | accepted 1..k-1)")
            ax.set_ylim(0, 1.02)
            ax.set_title(bench)
            ax.legend(fontsize=8)
            fig.tight_layout()
            path = root / f"acceptance_{_safe(bench)}.png"
            fig.savefig(path, dpi=120)
            paths.append(path)
        for m, r in drafters.items():
            cal = r.calibration
            recs = r.records or []
            if cal and "temperatures" in cal and recs:
                g = len(cal["temperatures"])
                recs = [x for x in recs if x.proposed > 0]
                conf = np.full((len(recs), g), 0.5)
                for i, x in enumerate(recs):
                    conf[i, : min(len(x.confidence), g)] = x.confidence[:g]
                acc = np.array([min(x.accepted, g) for x in recs])
                prop = np.array([min(x.proposed, g) for x in recs])
                path = root / f"reliability_{_safe(bench)}_{_safe(m)}.png"
                plot_reliability(
                    conf, acc, path, temperatures=np.array(cal["temperatures"]), proposed=prop
                )
                paths.append(path)
            if r.sweep:
                t = [s["threshold"] for s in r.sweep]
                fig = _figure(figsize=(8, 3.2))
                a1, a2 = fig.subplots(1, 2)
                a1.plot(t, [s["acceptance_rate"] for s in r.sweep], marker="o")
                a1.set_xlabel("confidence threshold")
                a1.set_ylabel("acceptance rate")
                a2.plot(t, [s["accepted"] for s in r.sweep], marker="o", label="accepted")
                a2.plot(t, [s["rejected"] for s in r.sweep], marker="o", label="rejected")
                a2.set_xlabel("confidence threshold")
                a2.set_ylabel("drafts per step")
                a2.legend(fontsize=8)
                fig.suptitle(f"{bench} / {m}")
                fig.tight_layout()
                path = root / f"sweep_{_safe(bench)}_{_safe(m)}.png"
                fig.savefig(path, dpi=120)
                paths.append(path)
    return paths
