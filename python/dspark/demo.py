"""The micro zoo's three drafters, evaluated end to end in a few minutes.

Loads the zoo shipped in the package (a small Qwen3 target trained on the Python standard
library, DSpark, DFlash and Eagle3 drafters trained against it, and a small plain LM for Hugging
Face assisted generation), decodes held-out code and prose prompts at temperatures 0 and 1 with
each drafter and with four baselines timed in the same run (plain decoding on the engine the
drafters use, ``transformers.generate``, HF assisted generation with the zoo's assistant LM, HF
prompt-lookup decoding), and prints one table: acceptance length tau, conditional acceptance at
draft position 1, the confidence AUC at position 1, tokens/s and the speedup over each baseline.
Plots and the full reports (:func:`dspark.eval.evaluate`, one per temperature) are written to
``out_dir`` (``dspark demo --out``).
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

from dspark.demo_table import (
    BASELINES,
    baseline_tokens_per_s,
    demo_rows,
    format_baselines,
    format_demo_table,
)

__all__ = ["BASELINES", "demo_rows", "format_baselines", "format_demo_table", "run_demo"]

DEFAULT_OUT = "dspark-demo"


def run_demo(
    zoo: Any = None,
    *,
    out_dir: str | os.PathLike[str] = DEFAULT_OUT,
    prompts_per_domain: int = 6,
    max_new_tokens: int = 64,
    temperatures: Any = (0.0, 1.0),
    assisted: bool = True,
    prompt_lookup: bool = True,
    engine: str = "auto",
    json_path: str | os.PathLike[str] | None = None,
    seed: int = 980406,
    progress: bool = True,
    plots: bool = True,
    print_fn: Any = print,
) -> dict[str, Any]:
    """Evaluate the zoo's drafters and print the demo table; returns the JSON document.

    Parameters
    ----------
    zoo : Zoo or path-like, optional
        A loaded :class:`dspark.zoo.Zoo` or a zoo directory (default: the package's zoo).
    out_dir : path-like
        ``report.md`` (the table), and per temperature ``T<t>/`` with the full report, plots
        and per-prompt cache.
    prompts_per_domain, max_new_tokens : int
        Held-out prompts per domain and tokens generated per prompt.
    temperatures : sequence of float
        Each one is a full evaluation (drafters and baselines); 0 = greedy.
    assisted, prompt_lookup : bool
        Also time Hugging Face assisted generation with the zoo's assistant LM, and HF
        prompt-lookup decoding.
    engine : {"auto", "paged", "hf"}
        Where the drafters and plain decoding run the target (``"auto"``: dspark's paged engine
        core when the target supports it), see :class:`dspark.eval.EvalConfig`.
    json_path : path-like, optional
        Also write the document there (atomically): ``results`` (the rows of
        :func:`dspark.demo_table.demo_rows`, every temperature), ``baselines``
        (``{label: {domain: {temperature: tokens/s}}}``), ``config``, ``report``, ``files``,
        ``notes``, ``wall_seconds``.
    """
    from dspark.eval import EvalConfig, evaluate
    from dspark.zoo.package import Zoo, load_zoo

    if prompts_per_domain < 1 or max_new_tokens < 1:
        raise ValueError(
            f"prompts_per_domain, max_new_tokens: expected >= 1, got {prompts_per_domain}, "
            f"{max_new_tokens}"
        )
    temps = [float(t) for t in temperatures]
    if not temps or any(not t >= 0 for t in temps) or len(set(temps)) != len(temps):
        raise ValueError(f"temperatures: expected distinct values >= 0, got {temperatures!r}")
    t_start = time.perf_counter()
    if not isinstance(zoo, Zoo):
        zoo = load_zoo(zoo, assistant=assisted)
    use_assisted = assisted and zoo.assistant is not None
    peers = (("assisted",) if use_assisted else ()) + (("prompt_lookup",) if prompt_lookup else ())
    for line in _zoo_summary(zoo):
        print_fn(line)
    out = Path(out_dir)
    names = list(zoo.drafters)
    reports: dict[float, Any] = {}
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    for t in temps:
        config = EvalConfig(
            max_new_tokens=max_new_tokens,
            temperature=t,
            seed=seed,
            max_samples=prompts_per_domain,
            plain=True,
            engine=engine,
            peers=peers,
            resume=False,  # wall-clock numbers are only meaningful when measured now
            progress=progress,
        )
        reports[t] = evaluate(
            zoo.target,
            zoo.drafters,
            {d: str(p) for d, p in zoo.prompts.items()},
            tokenizer=zoo.tokenizer,
            assistant_model=zoo.assistant if use_assisted else None,
            output_dir=out / f"T{t:g}",
            config=config,
            plots=plots,
        )
        rows += demo_rows(reports[t], names)
        notes += [f"T={t:g}: {n}" for n in reports[t].notes]
    baselines = baseline_tokens_per_s(reports)
    table = format_demo_table(rows)
    base_lines = format_baselines(baselines)
    _write_summary(out / "report.md", table, base_lines, temps)
    saved = sorted(
        str(p)
        for p in out.rglob("*")
        if p.suffix in (".png", ".md", ".json") and "cache" not in p.parts
    )
    wall = time.perf_counter() - t_start
    doc = {
        "results": rows,
        "baselines": baselines,
        "config": {
            "prompts_per_domain": prompts_per_domain,
            "max_new_tokens": max_new_tokens,
            "temperatures": temps,
            "engine": engine,
            "seed": seed,
            "zoo": str(zoo.path),
        },
        "report": str(out / "report.md"),
        "files": saved,
        "notes": notes,
        "wall_seconds": wall,
    }
    print_fn("")
    print_fn(table)
    print_fn("")
    for line in base_lines:
        print_fn(line)
    for t in temps:
        taus: dict[str, list[float]] = {}
        for r in rows:
            if r["temperature"] == t:
                taus.setdefault(r["drafter"], []).append(r["tau"])
        mean_tau = {k: sum(v) / len(v) for k, v in taus.items()}
        order = sorted(mean_tau, key=lambda k: mean_tau[k], reverse=True)
        print_fn(f"mean tau T={t:g}: " + ", ".join(f"{k} {mean_tau[k]:.2f}" for k in order))
    mismatched = [f"{r['drafter']}/{r['domain']}" for r in rows if r["matches_plain"] is False]
    if 0.0 in temps:
        print_fn(
            "T=0 outputs equal plain greedy decoding: "
            + (
                "yes, every drafter and domain"
                if not mismatched
                else "NO: " + ", ".join(mismatched)
            )
        )
    print_fn(f"report: {out / 'report.md'}")
    plots_saved = [p for p in saved if p.endswith(".png")]
    if plots_saved:
        print_fn("plots:  " + "\n        ".join(plots_saved))
    for note in notes:
        print_fn(f"note: {note}")
    print_fn(f"wall time: {wall:.0f} s")
    if json_path is not None:
        from dspark.utils.io import atomic_write

        text = json.dumps(_clean(doc), indent=1) + "\n"
        path = Path(json_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda p: Path(p).write_text(text))
        print_fn(f"json:   {path}")
    return doc


def _write_summary(path: Path, table: str, base_lines: list[str], temps: list[float]) -> None:
    """``report.md``: the demo table, the baselines and links to each temperature's report."""
    from dspark.utils.io import atomic_write

    links = [f"- T={t:g}: [T{t:g}/report.md](T{t:g}/report.md)" for t in temps]
    text = "\n".join(
        [
            "# dspark demo",
            "",
            "tau = tokens per round (bonus included); acc@1 = conditional acceptance of draft 1;",
            "AUC@1 = ROC AUC of the confidence for draft 1; vs X = tokens/s over baseline X.",
            "",
            "```",
            table,
            "",
            *base_lines,
            "```",
            "",
            "Full reports (acceptance per position, calibration, threshold sweeps):",
            "",
            *links,
            "",
        ]
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda p: Path(p).write_text(text, encoding="utf-8"))


def _zoo_summary(zoo: Any) -> list[str]:
    """Which models the demo runs and how they were trained (from their train records)."""
    c = zoo.target.config
    lines = [
        f"zoo: {zoo.path}",
        f"  target  {c.model_type}, {c.num_hidden_layers} layers, d={c.hidden_size}, "
        f"vocab {c.vocab_size}" + _trained(zoo.records.get("target")),
    ]
    for name, d in zoo.drafters.items():
        lines.append(
            f"  {name:7s} {d.config.num_layers} layer(s), G={d.config.block_size}"
            + _trained(zoo.records.get(name))
        )
    if zoo.assistant is not None:
        lines.append(
            f"  assistant (HF assisted generation) {zoo.assistant.config.num_hidden_layers} "
            "layers" + _trained(zoo.records.get("assistant"))
        )
    return lines


def _trained(rec: dict[str, Any] | None) -> str:
    if not rec or "steps" not in rec:
        return ""
    loss = rec.get("final_loss")
    tokens = rec.get("tokens_seen", 0)
    return f"; trained {rec['steps']} steps, {tokens / 1e6:.1f}M tokens" + (
        f", final loss {loss:.2f}" if isinstance(loss, (int, float)) else ""
    )


def _clean(x: Any) -> Any:
    """NaN -> None, so the JSON is standard."""
    if isinstance(x, float) and math.isnan(x):
        return None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_clean(v) for v in x]
    return x
