"""The rows, baselines and terminal table of ``dspark demo`` (:func:`dspark.demo.run_demo`)."""

from __future__ import annotations

import math
from typing import Any

__all__ = [
    "BASELINES",
    "baseline_tokens_per_s",
    "demo_rows",
    "format_baselines",
    "format_demo_table",
]

# method kind in an EvalReport -> (label in the baselines block, speedup key in a row, column)
BASELINES: dict[str, tuple[str, str, str]] = {
    "plain": ("plain decoding", "speedup", "vs plain"),
    "baseline": ("hf generate", "speedup_vs_hf_generate", "vs HF gen"),
    "assisted": ("hf assisted", "speedup_vs_assisted", "vs assisted"),
    "prompt_lookup": ("hf prompt lookup", "speedup_vs_prompt_lookup", "vs lookup"),
}

_SCORES = {"confidence": "confidence head", "draft_prob": "draft probability"}


def _by_kind(methods: dict[str, Any], kind: str) -> Any:
    """The method result of a kind ("plain", "baseline", "assisted", ...), or None."""
    return next((r for r in methods.values() if r.kind == kind), None)


def _ratio(r: Any, base: Any) -> float:
    if base is None or not base.tokens_per_s > 0:
        return math.nan
    return float(r.tokens_per_s / base.tokens_per_s)


def demo_rows(report: Any, drafters: list[str]) -> list[dict[str, Any]]:
    """One row per (drafter, domain) of one :class:`dspark.eval.EvalReport` (one temperature).

    Keys: drafter, domain, temperature, tau, accept_pos1 and accept_posG (conditional acceptance
    at draft positions 1 and G, G = the drafter's proposal length), G, auc (per position 1..G:
    ROC AUC of the drafter's confidence predicting that position's acceptance, among rounds that
    accepted every earlier position), auc_pos1, auc_score, tokens_per_s, speedup (over plain
    decoding on the same engine), speedup_vs_hf_generate (``transformers.generate`` on the
    same target), speedup_vs_assisted, speedup_vs_prompt_lookup (HF assisted generation with
    the zoo's assistant LM, HF prompt-lookup decoding) and matches_plain. NaN where a baseline
    did not run or a statistic is undefined.

    The confidence is DSpark's confidence head ``c_k`` (``auc_score = "confidence head"``); DFlash
    and Eagle3 have no head, so their score is the draft token's own probability under the
    drafter, ``q(d_k)`` (``auc_score = "draft probability"``). ``matches_plain`` is, at
    temperature 0, whether every output equals plain greedy decoding token for token (the
    losslessness check), and None at other temperatures or without plain decoding.
    """
    temperature = float(report.config.get("temperature", math.nan))
    rows = []
    for domain, methods in report.results.items():
        base = {kind: _by_kind(methods, kind) for kind in BASELINES}
        plain = base["plain"]
        for name in drafters:
            r = methods.get(name)
            if r is None:
                continue
            acc = r.acceptance or {}
            cond = list(acc.get("conditional", []))
            auc = list(acc.get("auc", [math.nan] * len(cond)))
            matches = None
            if temperature == 0 and plain is not None and plain.outputs is not None:
                matches = r.outputs == plain.outputs
            row: dict[str, Any] = {
                "drafter": name,
                "domain": domain,
                "temperature": temperature,
                "tau": acc.get("tau", math.nan),
                "accept_pos1": cond[0] if cond else math.nan,
                "accept_posG": cond[-1] if cond else math.nan,
                "G": len(cond),
                "auc_pos1": auc[0] if auc else math.nan,
                "auc": auc,
                "auc_score": _SCORES.get(acc.get("auc_score") or ""),
                "tokens_per_s": r.tokens_per_s,
            }
            for kind, (_label, key, _col) in BASELINES.items():
                row[key] = _ratio(r, base[kind])
            row["matches_plain"] = matches
            rows.append(row)
    return rows


def baseline_tokens_per_s(reports: dict[float, Any]) -> dict[str, dict[str, dict[str, float]]]:
    """``{label: {domain: {temperature: tokens/s}}}`` of every baseline that ran (temperature
    keys formatted ``f"{t:g}"``: ``"0"``, ``"1"``)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for t, report in reports.items():
        for domain, methods in report.results.items():
            for kind, (label, _key, _col) in BASELINES.items():
                r = _by_kind(methods, kind)
                if r is not None:
                    out.setdefault(label, {}).setdefault(domain, {})[f"{t:g}"] = r.tokens_per_s
    return out


def _fmt(v: Any, spec: str, suffix: str = "") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return format(v, spec) + suffix


def format_demo_table(rows: list[dict[str, Any]]) -> str:
    """The demo's terminal table: one line per (drafter, domain, temperature).

    An AUC computed from draft probabilities (no confidence head) is marked ``*``.
    """
    head = ["drafter", "domain", "T", "tau", "acc@1", "AUC@1", "tok/s"]
    head += [col for _label, _key, col in BASELINES.values()]
    cells = [head]
    for r in rows:
        star = "*" if r.get("auc_score") == _SCORES["draft_prob"] else " "
        auc = _fmt(r["auc_pos1"], ".2f")
        cells.append(
            [
                r["drafter"],
                r["domain"],
                _fmt(r["temperature"], "g"),
                _fmt(r["tau"], ".2f"),
                _fmt(r["accept_pos1"], ".2f"),
                auc + (star if auc != "-" else " "),
                _fmt(r["tokens_per_s"], ".1f"),
            ]
            + [_fmt(r[key], ".2f", "x") for _label, key, _col in BASELINES.values()]
        )
    widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
    lines = []
    for k, row in enumerate(cells):
        lines.append(
            "  ".join(
                c.ljust(w) if i < 3 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    if any(r.get("auc_score") == _SCORES["draft_prob"] for r in rows):
        lines.append("* AUC of the draft token's probability (no confidence head)")
    return "\n".join(lines)


def format_baselines(baselines: dict[str, dict[str, dict[str, float]]]) -> list[str]:
    """One line per (domain, temperature): each baseline's tokens/s."""
    keys: list[tuple[str, str]] = []
    for per_domain in baselines.values():
        for domain, per_t in per_domain.items():
            for t in per_t:
                if (domain, t) not in keys:
                    keys.append((domain, t))
    lines = []
    for domain, t in keys:
        parts = [
            f"{label} {_fmt(per_domain[domain][t], '.1f')}"
            for label, per_domain in baselines.items()
            if t in per_domain.get(domain, {})
        ]
        lines.append(f"baselines {domain} T={t} (tok/s): " + ", ".join(parts))
    return lines
