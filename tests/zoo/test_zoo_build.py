"""The whole zoo pipeline at toy scale (target -> data -> 3 drafters -> assistant -> export ->
load -> demo), the manifest's checksums, and the zoo committed in the package."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch
from tests._tiny import tiny_zoo_target_config

from dspark.zoo.build import build_zoo
from dspark.zoo.drafters import DataConfig, DrafterTrainConfig, load_samples
from dspark.zoo.package import ZOO_DIR, export_zoo, load_zoo, verify_zoo

TINY = tiny_zoo_target_config()
TINY_ASSISTANT = tiny_zoo_target_config(num_layers=1, total_steps=2)
TINY_DATA = DataConfig(num_samples=6, prompt_tokens=12, new_tokens=10, batch_size=3, shard_size=4)
TINY_DRAFTERS = DrafterTrainConfig(
    steps=2,
    global_batch=2,
    num_anchors=4,
    save_every=1,
    recipes={
        "dspark": {"num_layers": 1, "block_size": 3, "markov_rank": 8, "confidence_head": True},
        "dflash": {"num_layers": 1, "block_size": 3},
        "eagle3": {"num_layers": 1, "block_size": 3},
    },
)


def _build(out, budget=None):
    return build_zoo(
        out,
        budget_seconds=budget,
        target_cfg=TINY,
        data_cfg=TINY_DATA,
        drafter_cfg=TINY_DRAFTERS,
        assistant_cfg=TINY_ASSISTANT,
        max_files=40,
        progress=False,
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("zoo_build")
    # A zero budget stops right after the first stage's setup; a second call resumes to the end.
    first = _build(out, budget=0.0)
    assert not first["done"]
    res = _build(out)
    assert res["done"], res
    return out


def test_build_records_how_each_model_was_trained(built):
    data = json.loads((built / "data" / "data_record.json").read_text())
    assert data["done"] and data["answer_tokens"] > 0
    samples = load_samples(built / "data")
    assert len(samples) == TINY_DATA.num_samples
    for s in samples:  # loss only on the target's continuation, never on the prompt
        assert not s.loss_mask[: TINY_DATA.prompt_tokens].any()
        assert s.loss_mask[TINY_DATA.prompt_tokens :].all()
    for kind in ("dspark", "dflash", "eagle3"):
        rec = json.loads((built / "drafters" / kind / "model" / "train_record.json").read_text())
        assert rec["done"] and rec["steps"] == TINY_DRAFTERS.steps
        assert rec["tokens_seen"] > 0 and math.isfinite(rec["final_loss"])
        cfg = json.loads((built / "drafters" / kind / "model" / "config.json").read_text())
        assert cfg["mask_token_id"] == 1  # the tokenizer's <|mask|>


def test_data_shards_are_validated(built, tmp_path):
    shutil.copytree(built / "data", tmp_path / "data")
    shard = sorted((tmp_path / "data").glob("shard-*.npz"))[0]
    with np.load(shard) as f:
        fields = {k: f[k].copy() for k in f.files}
    fields["ids"][0, 0] ^= 1
    np.savez(shard, **fields)
    with pytest.raises(ValueError, match="checksum mismatch"):
        load_samples(tmp_path / "data")


def test_export_load_and_checksums(built, tmp_path):
    dest = tmp_path / "zoo"
    manifest = export_zoo(built, dest)
    assert manifest["total_bytes"] == sum(f["bytes"] for f in manifest["files"].values())
    assert "drafters/dspark/model.safetensors" in manifest["files"]
    zoo = load_zoo(dest)
    assert set(zoo.drafters) == {"dspark", "dflash", "eagle3"}
    assert zoo.assistant is not None and zoo.records["dspark"]["steps"] == TINY_DRAFTERS.steps
    ids = zoo.tokenizer("def f(x):", return_tensors="pt").input_ids
    assert zoo.target(ids).logits.shape[-1] == TINY.vocab_size
    # one flipped byte in any file is caught
    w = dest / "drafters" / "eagle3" / "model.safetensors"
    raw = bytearray(w.read_bytes())
    raw[-1] ^= 1
    w.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="SHA-256"):
        load_zoo(dest)
    w.write_bytes(bytes(raw[:-1]))
    with pytest.raises(ValueError, match="bytes"):
        verify_zoo(dest)
    w.unlink()
    with pytest.raises(ValueError, match="missing"):
        verify_zoo(dest)
    with pytest.raises(FileNotFoundError, match="MANIFEST"):
        verify_zoo(tmp_path)


def test_feature_cache_holds_the_targets_features_and_trains_a_drafter(built, tmp_path):
    from dspark.models import load_target
    from dspark.models.config import default_feature_layers
    from dspark.training.feature_cache import TargetCache, target_outputs
    from dspark.zoo.drafters import build_feature_cache, train_zoo_drafter

    target = load_target(built / "target" / "model", dtype=torch.float32)
    samples = load_samples(built / "data")
    layers = default_feature_layers(target.config.num_hidden_layers)
    # batches of 4 ragged samples: right padding must not change any row's features
    man = build_feature_cache(tmp_path / "cache", target, samples, layers, batch_size=4)
    assert man["num_samples"] == len(samples)
    cache = TargetCache(tmp_path / "cache")
    for i, s in enumerate(samples):
        row = cache[i]
        assert torch.equal(row["input_ids"], s.input_ids)
        assert torch.equal(row["loss_mask"], s.loss_mask)
        feats, _ = target_outputs(target, s.input_ids[None], None, layers)  # alone, unpadded
        torch.testing.assert_close(row["features"], feats[0], rtol=1e-2, atol=1e-2)  # bf16
    rec = train_zoo_drafter(
        tmp_path / "dspark",
        "dspark",
        target,
        built / "target" / "model",
        None,
        TINY_DRAFTERS,
        cache_dir=tmp_path / "cache",
        mask_token_id=1,
        progress=False,
    )
    assert rec["done"] and rec["source"] == "target cache" and math.isfinite(rec["final_loss"])
    assert (tmp_path / "dspark" / "model" / "model.safetensors").exists()
    with pytest.raises(ValueError, match="samples/cache_dir"):
        train_zoo_drafter(
            tmp_path / "x", "dspark", target, built / "target" / "model", samples,
            TINY_DRAFTERS, cache_dir=tmp_path / "cache",
        )  # fmt: skip


def test_greedy_data_is_the_targets_greedy_continuation(built, tmp_path):
    from dspark.models import load_target
    from dspark.zoo.build import load_tokens
    from dspark.zoo.drafters import generate_data
    from dspark.zoo.tokenizer import load_tokenizer

    target = load_target(built / "target" / "model", dtype=torch.float32)
    cfg = DataConfig(
        num_samples=3, prompt_tokens=12, new_tokens=8, batch_size=3, shard_size=3, temperature=0
    )
    tokens = load_tokens(built / "tokens.npz")
    eos = load_tokenizer(built / "tokenizer").convert_tokens_to_ids("<|endoftext|>")
    generate_data(tmp_path / "d", target, tokens, cfg, eos_token_id=eos, progress=False)
    for s in load_samples(tmp_path / "d"):
        ids = s.input_ids[: cfg.prompt_tokens].tolist()
        with torch.no_grad():  # reference: argmax of a full forward, one token at a time
            while len(ids) < len(s.input_ids):
                logits = target(torch.tensor([ids])).logits[0, -1]
                if len(ids) == cfg.prompt_tokens:  # min_new_tokens=1: no end-of-text first
                    logits[eos] = -float("inf")
                ids.append(int(logits.argmax()))
                if ids[-1] == eos:
                    break
        assert s.input_ids.tolist() == ids
    with pytest.raises(ValueError, match="temperature"):
        generate_data(
            tmp_path / "e", target, tokens, DataConfig(temperature=-1.0), eos_token_id=eos
        )


def _cached_runs(root, domain, method):
    """Per-prompt payloads the demo's evaluation cached (ordered by prompt index)."""
    files = sorted((root / "cache" / domain / method).glob("*.json"))
    assert files, (root, domain, method)
    return [json.loads(f.read_text())["payload"] for f in files]


def test_demo_code_path_on_a_tiny_zoo(built, tmp_path, capsys):
    from tests.reference.auc import conditional_auc_ref

    from dspark.cli import main

    dest = tmp_path / "zoo"
    export_zoo(built, dest)
    out_json = tmp_path / "demo.json"
    report = tmp_path / "report"
    rc = main(
        [
            "demo",
            "--zoo",
            str(dest),
            "--out",
            str(report),
            "--prompts",
            "2",
            "--max-new-tokens",
            "6",
            "--json",
            str(out_json),
            "--no-plots",
        ]
    )
    assert rc == 0
    doc = json.loads(out_json.read_text())
    rows = doc["results"]
    kinds, domains = ("dspark", "dflash", "eagle3"), ("code", "prose")
    assert sorted((r["drafter"], r["domain"], r["temperature"]) for r in rows) == sorted(
        (k, d, t) for k in kinds for d in domains for t in (0.0, 1.0)
    )
    labels = {"plain decoding", "hf generate", "hf assisted", "hf prompt lookup"}
    assert set(doc["baselines"]) == labels
    for per_domain in doc["baselines"].values():
        assert set(per_domain) == set(domains)
        for per_t in per_domain.values():
            assert set(per_t) == {"0", "1"} and all(v > 0 for v in per_t.values())
    for r in rows:
        assert 1.0 <= r["tau"] <= 1 + r["G"] and r["tokens_per_s"] > 0
        for key in (
            "speedup",
            "speedup_vs_hf_generate",
            "speedup_vs_assisted",
            "speedup_vs_prompt_lookup",
        ):
            assert r[key] > 0, key
        t = f"{r['temperature']:g}"
        plain = doc["baselines"]["plain decoding"][r["domain"]][t]
        assert r["speedup"] == pytest.approx(r["tokens_per_s"] / plain)
        # The AUC against the pairwise reference on the rounds the evaluation recorded.
        score = "confidence head" if r["drafter"] == "dspark" else "draft probability"
        assert r["auc_score"] == score and len(r["auc"]) == r["G"]
        runs = _cached_runs(report / f"T{t}", r["domain"], r["drafter"])
        col = 3 if r["drafter"] == "dspark" else 4  # [proposed, accepted, emitted, conf, q]
        rounds = [(x[0], x[1], x[col]) for p in runs for x in p["rounds"] if x[0] > 0]
        want = [conditional_auc_ref(rounds, k) for k in range(1, r["G"] + 1)]
        got = [math.nan if a is None else a for a in r["auc"]]
        assert got == pytest.approx(want, abs=1e-12, nan_ok=True)
        assert r["auc_pos1"] == r["auc"][0]
        # Losslessness at T=0: every drafter's output is the plain greedy output, which is
        # transformers' own greedy decoding.
        if r["temperature"] == 0:
            assert r["matches_plain"] is True
            mine = [p["tokens"] for p in runs]
            root = report / "T0"
            assert mine == [p["tokens"] for p in _cached_runs(root, r["domain"], "plain")]
            assert mine == [p["tokens"] for p in _cached_runs(root, r["domain"], "target")]
        else:
            assert r["matches_plain"] is None
    assert any(a is not None for r in rows for a in r["auc"])  # not only NaN against NaN
    assert (report / "report.md").exists() and (report / "T0" / "report.md").exists()
    text = capsys.readouterr().out
    for word in ("vs plain", "vs HF gen", "vs assisted", "vs lookup", "AUC@1", "mean tau T=0"):
        assert word in text
    assert "baselines code T=0 (tok/s): plain decoding" in text and "report.md" in text
    assert "T=0 outputs equal plain greedy decoding: yes" in text


def test_demo_rejects_bad_arguments(built):
    from dspark.demo import run_demo

    with pytest.raises(ValueError, match="prompts_per_domain"):
        run_demo(built, prompts_per_domain=0)
    with pytest.raises(ValueError, match="temperatures: expected distinct values >= 0"):
        run_demo(built, temperatures=(1.0, -0.5))
    with pytest.raises(ValueError, match="temperatures"):
        run_demo(built, temperatures=())


# --- the zoo committed in the package ----------------------------------------------------------

needs_zoo = pytest.mark.skipif(
    not (ZOO_DIR / "MANIFEST.json").exists(), reason="no zoo committed in this checkout"
)


@needs_zoo
def test_committed_zoo_checksums_match_and_it_is_small():
    manifest = verify_zoo()
    assert manifest["total_bytes"] < 60e6  # target 23 MB, assistant 5, drafters 3.5-5 each
    for name in ("target", "assistant", "dspark", "dflash", "eagle3"):
        rec = manifest["training"][name]
        assert rec["steps"] > 0 and rec["tokens_seen"] > 0 and math.isfinite(rec["final_loss"])


@needs_zoo
def test_committed_zoo_loads_and_drafts():
    zoo = load_zoo(verify=False)  # checksums: the test above
    assert zoo.target.config.num_hidden_layers == 12  # zoo v2 (tools/zoo_v2.py)
    ids = zoo.tokenizer("import os\n", return_tensors="pt").input_ids
    with torch.no_grad():
        logits = zoo.target(ids).logits
    assert torch.isfinite(logits).all()
    for kind, d in zoo.drafters.items():
        assert d.kind == kind
        assert d.config.num_layers < zoo.target.config.num_hidden_layers
