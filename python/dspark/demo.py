"""The micro zoo's three drafters, evaluated end to end in a few minutes.

Loads the zoo shipped in the package (a small Qwen3 target trained on the Python standard
library, DSpark, DFlash and Eagle3 drafters trained against it, and a small plain LM for Hugging
Face assisted generation), decodes held-out code and prose prompts with each method at
temperature 1, and prints one table: acceptance length tau per drafter and domain, conditional
acceptance at draft positions 1 and G, tokens/s, and speedup over plain target decoding and over
transformers' assisted generation. Plots and the full report (:func:`dspark.eval.evaluate`) are
written to ``out_dir`` (``dspark demo --out``).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

__all__ = ["demo_rows", "format_demo_table", "run_demo"]

DEFAULT_OUT = "dspark-demo"


def demo_rows(report: Any, drafters: list[str]) -> list[dict[str, Any]]:
    """One row per (drafter, domain) from an :class:`dspark.eval.EvalReport`.

    Keys: drafter, domain, tau, accept_pos1, accept_posG (G = the drafter's proposal length),
    G, tokens_per_s, speedup (over target-only decoding), speedup_vs_assisted (over Hugging Face
    assisted generation with the zoo's assistant LM; NaN when it did not run).
    """
    rows = []
    for domain, methods in report.results.items():
        assisted = _by_kind(methods, "assisted")
        for name in drafters:
            r = methods.get(name)
            if r is None:
                continue
            acc = r.acceptance or {}
            cond = list(acc.get("conditional", []))
            g = len(cond)
            rows.append(
                {
                    "drafter": name,
                    "domain": domain,
                    "tau": acc.get("tau", math.nan),
                    "accept_pos1": cond[0] if cond else math.nan,
                    "accept_posG": cond[-1] if cond else math.nan,
                    "G": g,
                    "tokens_per_s": r.tokens_per_s,
                    "speedup": r.speedup,
                    "speedup_vs_assisted": (
                        r.tokens_per_s / assisted.tokens_per_s
                        if assisted is not None and assisted.tokens_per_s > 0
                        else math.nan
                    ),
                }
            )
    return rows


def _by_kind(methods: dict[str, Any], kind: str) -> Any:
    """The method result of a kind ("baseline", "assisted", ...), or None."""
    return next((r for r in methods.values() if r.kind == kind), None)


def _fmt(v: Any, spec: str) -> str:
    if isinstance(v, float) and math.isnan(v):
        return "-"
    return format(v, spec)


def format_demo_table(rows: list[dict[str, Any]], peers: dict[str, dict[str, float]]) -> str:
    """The demo's terminal table (drafter rows, then plain decoding and assisted generation)."""
    head = ["drafter", "domain", "tau", "acc@1", "acc@G", "tok/s", "vs plain", "vs assisted"]
    cells = [head]
    for r in rows:
        cells.append(
            [
                r["drafter"],
                r["domain"],
                _fmt(r["tau"], ".2f"),
                _fmt(r["accept_pos1"], ".2f"),
                _fmt(r["accept_posG"], ".2f") + f" (G={r['G']})",
                _fmt(r["tokens_per_s"], ".1f"),
                _fmt(r["speedup"], ".2f") + "x",
                _fmt(r["speedup_vs_assisted"], ".2f") + "x",
            ]
        )
    for name, per_domain in peers.items():
        for domain, tps in per_domain.items():
            cells.append([name, domain, "", "", "", _fmt(tps, ".1f"), "", ""])
    widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
    lines = []
    for k, row in enumerate(cells):
        lines.append(
            "  ".join(
                c.ljust(w) if i < 2 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def run_demo(
    zoo: Any = None,
    *,
    out_dir: str | os.PathLike[str] = DEFAULT_OUT,
    prompts_per_domain: int = 8,
    max_new_tokens: int = 96,
    assisted: bool = True,
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
        Report, plots and per-prompt cache.
    prompts_per_domain, max_new_tokens : int
        Held-out prompts per domain and tokens generated per prompt.
    assisted : bool
        Also time Hugging Face assisted generation with the zoo's assistant LM.
    json_path : path-like, optional
        Also write ``{"results": [...], ...}`` there (atomically).
    """
    from dspark.eval import EvalConfig, evaluate
    from dspark.zoo.package import Zoo, load_zoo

    if prompts_per_domain < 1 or max_new_tokens < 1:
        raise ValueError(
            f"prompts_per_domain, max_new_tokens: expected >= 1, got {prompts_per_domain}, "
            f"{max_new_tokens}"
        )
    if not isinstance(zoo, Zoo):
        zoo = load_zoo(zoo, assistant=assisted)
    use_assisted = assisted and zoo.assistant is not None
    for line in _zoo_summary(zoo):
        print_fn(line)
    config = EvalConfig(
        max_new_tokens=max_new_tokens,
        temperature=1.0,
        seed=seed,
        max_samples=prompts_per_domain,
        peers=("assisted",) if use_assisted else (),
        resume=False,  # wall-clock numbers are only meaningful when measured now
        progress=progress,
    )
    out = Path(out_dir)
    report = evaluate(
        zoo.target,
        zoo.drafters,
        {d: str(p) for d, p in zoo.prompts.items()},
        tokenizer=zoo.tokenizer,
        assistant_model=zoo.assistant if use_assisted else None,
        output_dir=out,
        config=config,
        plots=plots,
    )
    names = list(zoo.drafters)
    rows = demo_rows(report, names)
    peers: dict[str, dict[str, float]] = {"plain decoding": {}, "hf assisted": {}}
    for domain, methods in report.results.items():
        for kind, label in (("baseline", "plain decoding"), ("assisted", "hf assisted")):
            r = _by_kind(methods, kind)
            if r is not None:
                peers[label][domain] = r.tokens_per_s
    peers = {k: v for k, v in peers.items() if v}
    saved = sorted(str(p) for p in out.glob("*") if p.suffix in (".png", ".md", ".json"))
    doc = {
        "results": rows,
        "baselines": peers,
        "config": {
            "prompts_per_domain": prompts_per_domain,
            "max_new_tokens": max_new_tokens,
            "temperature": 1.0,
            "seed": seed,
            "zoo": str(zoo.path),
        },
        "report": str(out / "report.md"),
        "files": saved,
        "notes": list(report.notes),
    }
    print_fn("")
    print_fn(format_demo_table(rows, peers))
    print_fn("")
    taus: dict[str, list[float]] = {}
    for r in rows:
        taus.setdefault(r["drafter"], []).append(r["tau"])
    mean_tau = {k: sum(v) / len(v) for k, v in taus.items()}
    order = sorted(mean_tau, key=lambda k: mean_tau[k], reverse=True)
    print_fn("mean tau: " + ", ".join(f"{k} {mean_tau[k]:.2f}" for k in order))
    print_fn(f"report: {out / 'report.md'}")
    plots_saved = [p for p in saved if p.endswith(".png")]
    if plots_saved:
        print_fn("plots:  " + "\n        ".join(plots_saved))
    for note in report.notes:
        print_fn(f"note: {note}")
    if json_path is not None:
        from dspark.utils.io import atomic_write

        text = json.dumps(_clean(doc), indent=1) + "\n"
        path = Path(json_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda p: Path(p).write_text(text))
        print_fn(f"json:   {path}")
    return doc


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
