"""Rebuild the micro zoo in the paper's regime (issue #15), stage by stage, each resumable.

The committed zoo has a 6-layer target and 1-2 layer drafters trained for 320 steps. This recipe
grows that target to 12 layers (function-preserving, :mod:`dspark.zoo.grow`) and trains it on,
samples the drafters' data from it (half greedy, half T=1), caches its features once and trains
the three drafters offline from that cache. Stages::

    python tools/zoo_v2.py target --steps 800      # ~30 min on 2 cores
    python tools/zoo_v2.py data --samples 2048     # per temperature, ~8 min
    python tools/zoo_v2.py cache                   # one target pass, ~5 min, ~3 GB
    python tools/zoo_v2.py drafter dspark --steps 3200 --threads 1   # run the three side by side
    python tools/zoo_v2.py heldout dspark --every 200   # held-out tau per checkpoint (plateau)
    python tools/zoo_v2.py export                  # into python/dspark/zoo/weights/

Finished stages are kept in ``zoo/v2/`` (committed: the target model and the data shards), so a
later session continues from the first unfinished stage. Every stage reuses what exists.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STATE = ROOT / "zoo" / "v2"  # committed stages
WORK = ROOT / "build" / "zoo_v2"  # large, rebuildable: token stream, checkpoints, cache

TARGET = {"num_layers": 12, "lr": 3e-4, "warmup": 50, "min_lr_ratio": 0.1, "seed": 1}


def _target_cfg(steps: int):
    from dspark.zoo.target_lm import TargetTrainConfig

    return TargetTrainConfig(total_steps=steps, checkpoint_every=25, **TARGET)  # type: ignore[arg-type]


def stage_target(steps: int) -> None:
    from dspark.zoo import package
    from dspark.zoo.build import _save_tokens, build_target
    from dspark.zoo.corpus import build_corpus
    from dspark.zoo.grow import seed_grown_checkpoint
    from dspark.zoo.target_lm import tokenize_docs
    from dspark.zoo.tokenizer import load_tokenizer

    pkg, cfg = package.ZOO_DIR, _target_cfg(steps)
    WORK.mkdir(parents=True, exist_ok=True)
    if not (WORK / "tokens.npz").exists():  # the packaged tokenizer over the same corpus
        (WORK / "tokenizer").mkdir(exist_ok=True)
        for f in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
            shutil.copy(pkg / "target" / f, WORK / "tokenizer" / f)
        shutil.copytree(pkg / "prompts", WORK / "prompts", dirs_exist_ok=True)
        corpus = build_corpus(max_files=None, heldout_fraction=0.05)
        tok = load_tokenizer(WORK / "tokenizer")
        texts = corpus.train["code"] + corpus.train["prose"]
        eos = tok.convert_tokens_to_ids("<|endoftext|>")
        _save_tokens(WORK / "tokens.npz", tokenize_docs(texts, tok, eos))
    if not (WORK / "target" / "checkpoint").exists():
        seed_grown_checkpoint(pkg / "target", WORK / "target", cfg)
    rec = build_target(WORK, cfg=cfg)
    if rec["done"]:
        for sub in ("tokenizer", "prompts"):
            shutil.copytree(WORK / sub, STATE / sub, dirs_exist_ok=True)
        shutil.copytree(WORK / "target" / "model", STATE / "target" / "model", dirs_exist_ok=True)
        record = json.loads((WORK / "target" / "train_record.json").read_text())
        old = json.loads((pkg / "target" / "train_record.json").read_text())
        record["grown_from"] = {k: old[k] for k in ("config", "steps", "tokens_seen", "final_loss")}
        (STATE / "target" / "train_record.json").write_text(json.dumps(record, indent=1))
    print(json.dumps({k: v for k, v in rec.items() if k != "config"}))


def _target():
    import torch

    from dspark.models import load_target

    return load_target(STATE / "target" / "model", dtype=torch.float32)


def _samples():
    from dspark.zoo.drafters import load_samples

    return [s for t in ("t0", "t1") for s in load_samples(STATE / f"data_{t}")]


def stage_data(samples: int) -> None:
    from dspark.utils.io import atomic_write_json
    from dspark.zoo.build import load_tokens
    from dspark.zoo.drafters import DataConfig, generate_data
    from dspark.zoo.tokenizer import load_tokenizer

    eos = load_tokenizer(STATE / "tokenizer").convert_tokens_to_ids("<|endoftext|>")
    tokens, target = load_tokens(WORK / "tokens.npz"), _target()
    cfgs = {
        "t0": DataConfig(num_samples=samples, temperature=0.0, seed=2),
        "t1": DataConfig(num_samples=samples, temperature=1.0, seed=1),
    }
    recs = {
        t: generate_data(STATE / f"data_{t}", target, tokens, c, eos_token_id=eos)
        for t, c in cfgs.items()
    }
    if all(r["done"] for r in recs.values()):
        (STATE / "data").mkdir(parents=True, exist_ok=True)
        atomic_write_json(
            STATE / "data" / "data_record.json",
            {
                "done": True,
                "parts": recs,
                "answer_tokens": sum(r["answer_tokens"] for r in recs.values()),
                "total_tokens": sum(r["total_tokens"] for r in recs.values()),
                "note": "zoo target continuations of corpus windows: half greedy, half T=1",
            },
        )
    print(json.dumps({t: {k: v for k, v in r.items() if k != "config"} for t, r in recs.items()}))


def stage_cache() -> None:
    from dspark.models.config import default_feature_layers
    from dspark.zoo.drafters import build_feature_cache

    target = _target()
    layers = default_feature_layers(target.config.num_hidden_layers)
    man = build_feature_cache(WORK / "cache", target, _samples(), layers)
    print(json.dumps({k: man[k] for k in ("num_samples", "num_tokens", "feature_layers")}))


def stage_drafter(kind: str, steps: int) -> None:
    from dspark.zoo.drafters import DrafterTrainConfig, train_zoo_drafter
    from dspark.zoo.tokenizer import load_tokenizer

    mask = load_tokenizer(STATE / "tokenizer").convert_tokens_to_ids("<|mask|>")
    cfg = DrafterTrainConfig(steps=steps, save_every=50)
    rec = train_zoo_drafter(
        WORK / "drafters" / kind,
        kind,
        _target(),
        STATE / "target" / "model",
        None,
        cfg,
        mask_token_id=mask,
        cache_dir=WORK / "cache",
    )
    if rec["done"]:
        shutil.copytree(WORK / "drafters" / kind / "model", STATE / "drafters" / kind / "model")
    print(json.dumps({k: v for k, v in rec.items() if k != "loss_curve"}))


def stage_heldout(kind: str, every: int) -> None:
    """Held-out acceptance of ``kind``'s checkpoints (every ``every`` steps and the last):
    tau on the zoo's held-out prompts (6 per domain, 64 tokens, T=0 and T=1) per step, written
    to ``zoo/v2/drafters/KIND/heldout_curve.json`` and plotted beside it: the plateau check."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dspark.demo_table import demo_rows
    from dspark.eval import EvalConfig, evaluate
    from dspark.models import Drafter
    from dspark.utils.io import atomic_write_json
    from dspark.zoo.tokenizer import load_tokenizer

    run = WORK / "drafters" / kind / "run"
    ckpts = sorted(run.glob("step-*[0-9]"))
    if not ckpts:
        raise SystemExit(f"heldout: no checkpoints of {kind} in {run}")
    steps = {int(c.name.split("-")[1]): c for c in ckpts}
    chosen = sorted(n for n in steps if n % every == 0 or n == max(steps))
    target, tok = _target(), load_tokenizer(STATE / "tokenizer")
    drafters = {
        f"step{n}": Drafter.from_pretrained(steps[n], target, verify=False).float().eval()
        for n in chosen
    }
    prompts = {d: str(STATE / "prompts" / f"{d}.jsonl") for d in ("code", "prose")}
    curve: dict[str, dict[str, list[float]]] = {}
    for t in (0.0, 1.0):
        cfg = EvalConfig(
            max_new_tokens=64,
            temperature=t,
            max_samples=6,
            baseline=False,
            plain=False,
            peers=(),
            resume=False,
        )
        rep = evaluate(target, drafters, prompts, tokenizer=tok, config=cfg, plots=False)
        for r in demo_rows(rep, list(drafters)):
            key = f"{r['domain']} T={t:g}"
            curve.setdefault(key, {"step": [], "tau": [], "acc1": [], "auc1": []})
            curve[key]["step"].append(int(r["drafter"][4:]))
            curve[key]["tau"].append(round(float(r["tau"]), 4))
            curve[key]["acc1"].append(round(float(r["accept_pos1"]), 4))
            curve[key]["auc1"].append(round(float(r["auc_pos1"]), 4))
    dest = STATE / "drafters" / kind
    dest.mkdir(parents=True, exist_ok=True)
    atomic_write_json(dest / "heldout_curve.json", {"kind": kind, "curve": curve})
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, c in curve.items():
        ax.plot(c["step"], c["tau"], marker="o", label=key)
    ax.set(xlabel="training step", ylabel="held-out tau", title=f"zoo v2 {kind}: held-out tau")
    ax.legend()
    fig.tight_layout()
    fig.savefig(dest / "heldout_curve.png", dpi=100)
    print(json.dumps(curve))


def stage_export() -> None:
    from dspark.zoo import package

    pkg = package.ZOO_DIR
    (STATE / "assistant" / "model").mkdir(parents=True, exist_ok=True)  # unchanged peer
    for f in ("config.json", "generation_config.json", "model.safetensors"):
        shutil.copy(pkg / "assistant" / f, STATE / "assistant" / "model" / f)
    shutil.copy(pkg / "assistant" / "train_record.json", STATE / "assistant")
    man = package.export_zoo(STATE)
    print(json.dumps({"total_bytes": man["total_bytes"]}))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("stage", choices=["target", "data", "cache", "drafter", "heldout", "export"])
    p.add_argument("kind", nargs="?", choices=["dspark", "dflash", "eagle3"])
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--samples", type=int, default=2048, help="per temperature (data stage)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--every", type=int, default=200, help="checkpoint spacing (heldout stage)")
    a = p.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    if a.stage in ("drafter", "heldout") and a.kind is None:
        p.error(f"{a.stage}: expected a kind (dspark, dflash or eagle3)")
    if a.stage == "target":
        stage_target(a.steps or 800)
    elif a.stage == "data":
        stage_data(a.samples)
    elif a.stage == "cache":
        stage_cache()
    elif a.stage == "drafter":
        stage_drafter(a.kind, a.steps or 3200)
    elif a.stage == "heldout":
        stage_heldout(a.kind, a.every)
    else:
        stage_export()
    return 0


if __name__ == "__main__":
    sys.exit(main())
