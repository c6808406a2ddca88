"""``dspark.eval.evaluate``: acceptance and wall-clock evaluation of drafters on prompt files.

For every benchmark file and every method (target-only decoding, each drafter, optional
Hugging Face peers) prompts run in fixed batches, the methods taking turns batch by batch; each
prompt's result is cached on disk (atomically, validated on load) so an interrupted run resumes
where it stopped. Acceptance statistics follow ``docs/algorithms.md`` section 5; wall-clock
numbers compare methods on the same prompts in the same process.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from dspark.eval.config import EvalConfig
from dspark.eval.datasets import Prompt, encode_prompt, load_prompts
from dspark.eval.methods import _Method, _model_identity, _Runner, _weights_checksum
from dspark.eval.peers import PEERS
from dspark.eval.report import EvalReport, MethodResult, summarise_method
from dspark.eval.result_cache import ResultCache, fingerprint
from dspark.models.base import Drafter

__all__ = ["BASELINE", "PLAIN", "EvalConfig", "evaluate"]

BASELINE = "target"  # method name of target-only decoding with transformers' generate
PLAIN = "plain"  # method name of target-only decoding on the drafters' engine (EvalConfig.plain)


@dataclass
class _Bench:
    name: str
    prompts: list[Prompt]
    ids: list[list[int]]
    digests: list[str]  # of the encoded ids: another tokenizer/template means other inputs


def _benchmarks(
    prompt_files: Sequence[str | os.PathLike[str]] | Mapping[str, str | os.PathLike[str]],
    tokenizer: Any,
    cfg: EvalConfig,
) -> list[_Bench]:
    if isinstance(prompt_files, (str, os.PathLike)):
        raise TypeError("prompt_files: expected a list of paths (or name -> path), got one path")
    items = (
        list(prompt_files.items())
        if isinstance(prompt_files, Mapping)
        else [(Path(p).stem, p) for p in prompt_files]
    )
    if not items:
        raise ValueError("prompt_files: expected at least one prompt file")
    names = [n for n, _ in items]
    if len(set(names)) != len(names):
        raise ValueError(f"prompt_files: benchmark names must be unique, got {names}")
    out = []
    for name, path in items:
        prompts = load_prompts(path, max_samples=cfg.max_samples, seed=cfg.seed)
        ids = [encode_prompt(p, tokenizer, chat_template=cfg.chat_template) for p in prompts]
        digests = [
            fingerprint({"prompt": p.digest, "ids": r}) for p, r in zip(prompts, ids, strict=True)
        ]
        out.append(_Bench(name, prompts, ids, digests))
    return out


def _methods(
    drafters: Mapping[str, Drafter], assistant_model: Any, cfg: EvalConfig, notes: list[str]
) -> list[_Method]:
    methods = [_Method(PLAIN, "plain")] if cfg.plain else []
    if cfg.baseline:
        methods.append(_Method(BASELINE, "baseline"))
    for name, d in drafters.items():
        if not isinstance(d, Drafter):
            raise TypeError(
                f"drafters[{name!r}]: expected a dspark Drafter, got {type(d).__name__}"
            )
        if name in (BASELINE, PLAIN) or name in PEERS:
            raise ValueError(f"drafters: the name {name!r} is reserved")
        methods.append(_Method(name, "drafter", d))
        if cfg.online_thresholds and not d.has_confidence:
            notes.append(f"{name}: no confidence head, online thresholds skipped")
            continue
        for t in cfg.online_thresholds:
            extra = {"confidence_threshold": float(t)}
            methods.append(_Method(f"{name}@{float(t):g}", "drafter", d, extra=extra))
    for peer in cfg.peers:
        if peer == "assisted":
            if assistant_model is None:
                notes.append("assisted: skipped (no assistant_model given)")
                continue
            methods.append(_Method("hf_assisted", peer, extra={"assistant_model": assistant_model}))
        elif peer == "prompt_lookup":
            n = int(cfg.prompt_lookup_num_tokens)
            methods.append(_Method("hf_prompt_lookup", peer, extra={"prompt_lookup_num_tokens": n}))
    return methods


def evaluate(
    target: Any,
    drafters: Mapping[str, Drafter],
    prompt_files: Sequence[str | os.PathLike[str]] | Mapping[str, str | os.PathLike[str]],
    *,
    tokenizer: Any | None = None,
    assistant_model: Any | None = None,
    output_dir: str | os.PathLike[str] | None = None,
    config: EvalConfig | None = None,
    plots: bool = True,
) -> EvalReport:
    """Evaluate drafters (and baselines) on benchmark prompt files.

    Parameters
    ----------
    target : PreTrainedModel
        Hugging Face causal LM every method decodes with.
    drafters : mapping name -> Drafter
        Drafters built for ``target`` (e.g. ``{"dspark": d1, "eagle3": d2}``); may be empty to
        time the baseline and peers only.
    prompt_files : list of paths, or mapping benchmark name -> path
        JSONL prompt files (see :func:`dspark.eval.load_prompts`); the name defaults to the
        file stem.
    tokenizer : tokenizer, optional
        Needed for text prompts (chat template when present, else ``encode``); see
        :class:`dspark.eval.ByteTokenizer` for targets without one.
    assistant_model : PreTrainedModel, optional
        Small HF draft model for the ``"assisted"`` peer (same vocabulary as ``target``).
    output_dir : path-like, optional
        Where the per-prompt cache (``cache/``), ``report.md``, ``report.json`` and plots go;
        without it nothing is written (and nothing resumes).
    config : EvalConfig, optional
    plots : bool
        Save plots with the report (needs matplotlib; skipped with a note otherwise).

    Returns
    -------
    EvalReport
        ``.results[benchmark][method]`` -> :class:`MethodResult`; ``.table()`` rows,
        ``.to_markdown()``, ``.to_json()``.

    Raises
    ------
    FileNotFoundError, ValueError, TypeError
        Missing or malformed prompt files, bad settings, or non-drafter values.
    """
    cfg = config or EvalConfig()
    cfg.check()
    notes: list[str] = []
    benches = _benchmarks(prompt_files, tokenizer, cfg)
    methods = _methods(drafters, assistant_model, cfg, notes)
    runner = _Runner(target, cfg)
    for b in benches:
        for i, row in enumerate(b.ids):
            bad = [t for t in row if not 0 <= t < runner.vocab]
            if bad:
                raise ValueError(
                    f"prompts: {b.name} prompt {b.prompts[i].index} has token id "
                    f"{bad[0]} outside the target vocabulary [0, {runner.vocab})"
                )
    # Without resume the cache is still written (a later run may resume) but never read.
    cache = ResultCache(None if output_dir is None else Path(output_dir) / "cache")
    results: dict[str, dict[str, MethodResult]] = {}
    for b in benches:
        results[b.name] = {}
        bar = _progress(cfg, b, methods)
        try:
            runs = {m.name: _run_method(runner, cache, b, m, cfg, notes, bar) for m in methods}
            done = _round_robin(runs)
        finally:
            if bar is not None:
                bar.close()
        for m in methods:
            payloads = done[m.name]
            if payloads is None:
                continue
            block = cfg.num_draft_tokens or m.drafter.config.block_size if m.drafter else None
            res = summarise_method(m.name, m.kind, payloads, block, cfg)
            if "confidence_threshold" in m.extra:
                res.sweep = None  # a replay sweep on already-cut proposals would mislead
            results[b.name][m.name] = res
        base = results[b.name].get(BASELINE)
        plain = results[b.name].get(PLAIN)
        for r in results[b.name].values():
            if base is not None and base.tokens_per_s > 0:
                r.speedup = r.tokens_per_s / base.tokens_per_s
            if plain is not None and plain.tokens_per_s > 0:
                r.speedup_vs_plain = r.tokens_per_s / plain.tokens_per_s
    if cache.invalid:
        notes.append(f"{len(cache.invalid)} invalid cache entries were recomputed")
    report = EvalReport(results, notes, asdict(cfg) | {"thresholds": list(cfg.thresholds)})
    if output_dir is not None:
        report.save(output_dir, plots=plots)
    return report


def _batch_size(m: _Method, cfg: EvalConfig) -> int:
    # Peers run one prompt at a time (transformers' assisted/lookup decoding is batch size 1).
    return cfg.batch_size if m.kind in ("baseline", "plain", "drafter") else 1


def _progress(cfg: EvalConfig, b: _Bench, methods: list[_Method]) -> Any:
    """One tqdm bar over every method's batches of a benchmark (None without progress)."""
    if not cfg.progress:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return None
    total = sum(-(-len(b.ids) // _batch_size(m, cfg)) for m in methods)
    return tqdm(total=total, desc=b.name, unit="batch", leave=False)


def _round_robin(
    runs: dict[str, Generator[None, None, list[dict[str, Any]] | None]],
) -> dict[str, list[dict[str, Any]] | None]:
    """Advance every method one batch at a time, in turn, until each has returned.

    Interleaving spreads slow phases of a shared machine over all methods alike, so their
    tokens/s ratios are fairer than when each method runs all its batches in one stretch.
    """
    done: dict[str, list[dict[str, Any]] | None] = {}
    while len(done) < len(runs):
        for name, run in runs.items():
            if name in done:
                continue
            try:
                next(run)
            except StopIteration as stop:
                done[name] = stop.value
    return done


def _run_method(
    runner: _Runner,
    cache: ResultCache,
    b: _Bench,
    m: _Method,
    cfg: EvalConfig,
    notes: list[str],
    bar: Any = None,
) -> Generator[None, None, list[dict[str, Any]] | None]:
    """Run one method batch by batch, yielding after each batch; returns every prompt's payload
    (cached batches reused), or None when the method was skipped."""
    bs = _batch_size(m, cfg)
    settings = {
        "payload": 2,  # 2: generated tokens and draft probabilities recorded
        "method": m.name,
        "kind": m.kind,
        "target": runner.identity,
        "drafter": None if m.drafter is None else m.drafter.config.to_dict(),
        # A retrained drafter under the same name and config must not reuse old results.
        "weights": None if m.drafter is None else _weights_checksum(m.drafter),
        "batch_size": bs,
        "max_new_tokens": cfg.max_new_tokens,
        "temperature": cfg.temperature,
        "seed": cfg.seed,
        "num_draft_tokens": cfg.num_draft_tokens,
        "chat_template": cfg.chat_template,
        "engine": runner.engine if m.kind in ("plain", "drafter") else "hf",
        "extra": {k: v for k, v in m.extra.items() if k != "assistant_model"},
        "assistant": None
        if "assistant_model" not in m.extra
        else _model_identity(m.extra["assistant_model"]),
    }
    fp = fingerprint(settings)
    batches = [list(range(s, min(s + bs, len(b.ids)))) for s in range(0, len(b.ids), bs)]
    payloads: list[dict[str, Any] | None] = [None] * len(b.ids)
    warmed = False
    for idx in batches:
        hits = [
            cache.load(b.name, m.name, b.prompts[i].index, b.digests[i], fp) if cfg.resume else None
            for i in idx
        ]
        if all(h is not None for h in hits):
            for i, h in zip(idx, hits, strict=True):
                payloads[i] = h
        else:
            rows = [b.ids[i] for i in idx]
            seed = cfg.seed + b.prompts[idx[0]].index
            try:
                if cfg.warmup and not warmed:
                    runner.run(m, rows[:1], seed, max_new=min(4, cfg.max_new_tokens))
                    warmed = True
                got = runner.run(m, rows, seed)
            except Exception as e:  # peers: any failure skips the method, with a note
                if m.kind in ("baseline", "plain", "drafter"):
                    raise
                notes.append(f"{m.name}: skipped on {b.name} ({type(e).__name__}: {e})")
                return None
            for i, p in zip(idx, got, strict=True):
                payloads[i] = p
                cache.store(b.name, m.name, b.prompts[i].index, b.digests[i], fp, p)
        if bar is not None:
            bar.update(1)
        yield
    return [p for p in payloads if p is not None]
