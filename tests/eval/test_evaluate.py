"""dspark.eval.evaluate end to end on a tiny random target: report, plots, resume, peers."""

from __future__ import annotations

import json

import pytest
import torch

import dspark.eval.methods as methods_mod
from dspark.eval import BASELINE, ByteTokenizer, EvalConfig, evaluate
from dspark.generation import SpeculativeGenerator
from tests._tiny import tiny_qwen3


def _cfg(**kw):
    base = {"max_new_tokens": 8, "batch_size": 2, "progress": False}
    return EvalConfig(**(base | kw))


def _strict_json(path):
    def no_nan(x):
        raise AssertionError(f"non-standard JSON constant {x}")

    return json.loads(path.read_text(), parse_constant=no_nan)


def test_evaluate_end_to_end_report_and_resume(
    target, oracle, dspark_drafter, prompt_file, tmp_path, monkeypatch
):
    out = tmp_path / "out"
    drafters = {"oracle": oracle, "dspark": dspark_drafter}
    rep = evaluate(target, drafters, [prompt_file], output_dir=out, config=_cfg())
    res = rep.results["bench"]
    assert list(res) == [BASELINE, "oracle", "dspark"]
    for r in res.values():
        assert r.prompts == 4
        assert r.new_tokens == 4 * 8  # the tiny target has no EOS: every prompt runs to the cap
        assert r.tokens_per_s > 0
    assert res[BASELINE].speedup == 1.0
    # Rounds account for every generated token but the first (sampled at prefill).
    for name in drafters:
        acc = res[name].acceptance
        assert acc["tau"] * acc["rounds"] == pytest.approx(4 * 8 - 4)
        assert len(acc["conditional"]) == 4
    # DSpark: calibration before/after STS and the sweep; t = 0 reproduces the plain run.
    ds = res["dspark"]
    assert set(ds.calibration) >= {"before", "after", "temperatures", "split"}
    assert len(ds.sweep) == len(_cfg().thresholds)
    assert ds.sweep[0]["proposed"] == pytest.approx(ds.acceptance["proposed"])
    assert ds.sweep[0]["accepted"] == pytest.approx(ds.acceptance["accepted"])
    assert res["oracle"].calibration is None
    assert res["oracle"].sweep is None

    names = {p.name for p in out.iterdir()}
    assert {
        "report.md",
        "report.json",
        "acceptance_bench.png",
        "reliability_bench_dspark.png",
        "sweep_bench_dspark.png",
    } <= names
    saved = _strict_json(out / "report.json")
    assert [r["method"] for r in saved["table"]] == [BASELINE, "oracle", "dspark"]
    md = (out / "report.md").read_text()
    assert "conditional acceptance" in md
    assert "Threshold sweep" in md
    for m in (BASELINE, "oracle", "dspark"):
        assert len(list((out / "cache" / "bench" / m).glob("*.json"))) == 4

    # Resume: every prompt is cached, so no generation may run at all.
    def boom(*a, **k):
        raise AssertionError("generation ran although every prompt was cached")

    with monkeypatch.context() as mp:
        mp.setattr(SpeculativeGenerator, "generate", boom)
        mp.setattr(methods_mod, "hf_generate_tokens", boom)
        mp.setattr(methods_mod, "plain_generate", boom)
        again = evaluate(target, drafters, [prompt_file], output_dir=out, config=_cfg())
    assert again.table() == rep.table()

    # A truncated cache entry is detected and its batch recomputed, identically (fixed seeds).
    victim = sorted((out / "cache" / "bench" / "oracle").glob("*.json"))[0]
    victim.write_text(victim.read_text()[:20])
    fixed = evaluate(target, drafters, [prompt_file], output_dir=out, config=_cfg(), plots=False)
    assert any("invalid cache" in n for n in fixed.notes)
    assert fixed.results["bench"]["oracle"].acceptance == res["oracle"].acceptance


def test_evaluate_greedy_oracle_accepts_every_draft(target, oracle, prompt_file):
    rep = evaluate(
        target, {"oracle": oracle}, [prompt_file], config=_cfg(temperature=0.0, baseline=False)
    )
    acc = rep.results["bench"]["oracle"].acceptance
    # Budget 8: first token at prefill, then 4 drafts + bonus (5 tokens), then 1 draft + bonus.
    assert acc["tau"] == pytest.approx(3.5)
    assert acc["conditional"] == [1.0, 1.0, 1.0, 1.0]
    assert acc["acceptance_rate"] == 1.0


def test_evaluate_changed_settings_do_not_reuse_cache(target, oracle, prompt_file, tmp_path):
    out = tmp_path / "out"
    evaluate(target, {"oracle": oracle}, [prompt_file], output_dir=out, config=_cfg())
    rep = evaluate(
        target, {"oracle": oracle}, [prompt_file], output_dir=out, config=_cfg(max_new_tokens=5)
    )
    assert rep.results["bench"]["oracle"].new_tokens == 4 * 5
    assert any("invalid cache" in n for n in rep.notes)


def test_evaluate_text_prompts_and_peers(target, tmp_path, caplog):
    pf = tmp_path / "chat.jsonl"
    pf.write_text('{"turns": ["hello there", "ignored second turn"]}\n{"turns": ["2+2?"]}\n')
    assistant = tiny_qwen3(vocab=256, layers=1, logit_scale=20.0, seed=1)
    rep = evaluate(
        target,
        {},
        {"chat": pf},
        tokenizer=ByteTokenizer(256),
        assistant_model=assistant,
        config=_cfg(peers=("assisted", "prompt_lookup"), batch_size=1, prompt_lookup_num_tokens=3),
    )
    res = rep.results["chat"]
    assert set(res) == {BASELINE, "hf_assisted", "hf_prompt_lookup"}
    for r in res.values():
        assert r.new_tokens == 2 * 8
        assert r.speedup > 0
    # Deprecation notices that transformers logs (not warns) are caught here, not by pytest.
    assert not [r.getMessage() for r in caplog.records if "deprecated" in r.getMessage()]


def test_evaluate_peer_failures_are_skipped_with_a_note(target, prompt_file):
    rep = evaluate(
        target, {}, [prompt_file], assistant_model=object(), config=_cfg(peers=("assisted",))
    )
    assert "hf_assisted" not in rep.results["bench"]
    assert any(n.startswith("hf_assisted: skipped") for n in rep.notes)
    rep = evaluate(target, {}, [prompt_file], config=_cfg(peers=("assisted",)))
    assert any("no assistant_model" in n for n in rep.notes)


def test_evaluate_batch_size_changes_nothing_but_batching(target, oracle, prompt_file):
    """Greedy decoding is batch-independent: batch 1 and batch 3 give identical statistics."""
    one = evaluate(
        target,
        {"oracle": oracle},
        [prompt_file],
        config=_cfg(temperature=0.0, batch_size=1, baseline=False),
    )
    three = evaluate(
        target,
        {"oracle": oracle},
        [prompt_file],
        config=_cfg(temperature=0.0, batch_size=3, baseline=False),
    )
    assert one.results["bench"]["oracle"].acceptance == three.results["bench"]["oracle"].acceptance


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"config": EvalConfig(batch_size=0)}, ValueError, "batch_size"),
        ({"config": EvalConfig(peers=("medusa",))}, ValueError, "peers"),
        ({"config": EvalConfig(temperature=-1.0)}, ValueError, "temperature"),
        ({"drafters": {"x": torch.nn.Linear(2, 2)}}, TypeError, "drafters"),
        ({"drafters": {"target": None}}, TypeError, "drafters"),
    ],
)
def test_evaluate_bad_arguments(target, prompt_file, kwargs, exc, match):
    args = {"drafters": {}, "config": _cfg()} | kwargs
    with pytest.raises(exc, match=match):
        evaluate(target, args["drafters"], [prompt_file], config=args["config"])


def test_evaluate_bad_prompts(target, tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        evaluate(target, {}, [tmp_path / "missing.jsonl"], config=_cfg())
    big = tmp_path / "big.jsonl"
    big.write_text('{"input_ids": [1, 999]}\n')
    with pytest.raises(ValueError, match="outside the target vocabulary"):
        evaluate(target, {}, [big], config=_cfg())
    with pytest.raises(TypeError, match="prompt_files"):
        evaluate(target, {}, str(big), config=_cfg())
    text = tmp_path / "t.jsonl"
    text.write_text('{"turns": ["hi"]}\n')
    with pytest.raises(ValueError, match="tokenizer"):
        evaluate(target, {}, [text], config=_cfg())


def test_evaluate_online_thresholds(target, oracle, dspark_drafter, prompt_file):
    rep = evaluate(
        target,
        {"oracle": oracle, "dspark": dspark_drafter},
        [prompt_file],
        config=_cfg(online_thresholds=(1.0,), baseline=False),
    )
    res = rep.results["bench"]
    assert set(res) == {"oracle", "dspark", "dspark@1"}
    # Threshold 1 keeps no draft of an untrained head (c_k < 1): plain target steps.
    cut = res["dspark@1"]
    assert cut.acceptance["proposed"] == 0.0
    assert cut.acceptance["tau"] == 1.0
    assert cut.sweep is None
    assert any("oracle: no confidence head" in n for n in rep.notes)
    with pytest.raises(ValueError, match="online_thresholds"):
        evaluate(target, {}, [prompt_file], config=_cfg(online_thresholds=(2.0,)))


def test_evaluate_stop_tokens_counted_alike(prompt_file):
    """With an EOS that greedy decoding reaches, target-only and speculative runs stop at the
    same place (both count the EOS), so tokens/s compare like with like."""
    from tests._tiny import greedy_reference
    from tests.eval.conftest import BOS, BosOracle

    tgt = tiny_qwen3(vocab=256, layers=2, logit_scale=20.0)
    ref = greedy_reference(tgt, torch.tensor([[BOS, 5, 9, 17, 33]]), 6)[0, 5:].tolist()
    tgt.generation_config.eos_token_id = ref[2]  # prompt 0 stops after 3 tokens
    rep = evaluate(
        tgt,
        {"oracle": BosOracle(tgt, block_size=4)},
        [prompt_file],
        config=_cfg(temperature=0.0, max_new_tokens=6),
    )
    res = rep.results["bench"]
    assert res["oracle"].new_tokens == res[BASELINE].new_tokens
    assert res[BASELINE].new_tokens < 4 * 6


def test_evaluate_cache_is_per_target(target, prompt_file, tmp_path):
    out = tmp_path / "out"
    evaluate(target, {}, [prompt_file], output_dir=out, config=_cfg(), plots=False)
    other = tiny_qwen3(vocab=256, layers=2, logit_scale=20.0, seed=5)
    rep = evaluate(other, {}, [prompt_file], output_dir=out, config=_cfg(), plots=False)
    assert any("invalid cache" in n for n in rep.notes)


def test_evaluate_plain_decoding_on_the_drafters_engine(
    target, oracle, dspark_drafter, prompt_file
):
    """``plain=True`` times target-only decoding on the drafters' runner (paged here: head dim
    64); at T=0 every method's outputs are the target's greedy continuation."""
    from dspark.eval import PLAIN
    from tests._tiny import greedy_reference

    drafters = {"oracle": oracle, "dspark": dspark_drafter}
    rep = evaluate(target, drafters, [prompt_file], config=_cfg(temperature=0.0, plain=True))
    res = rep.results["bench"]
    assert list(res) == [PLAIN, BASELINE, "oracle", "dspark"]
    assert res[PLAIN].kind == "plain" and res[PLAIN].speedup_vs_plain == pytest.approx(1.0)
    prompts = [json.loads(line)["input_ids"] for line in prompt_file.read_text().splitlines()]
    want = [greedy_reference(target, torch.tensor([p]), 8)[0, len(p) :].tolist() for p in prompts]
    for name, r in res.items():
        assert r.outputs == want, name
    assert res["oracle"].speedup_vs_plain == pytest.approx(
        res["oracle"].tokens_per_s / res[PLAIN].tokens_per_s
    )
    assert "speedup_vs_plain" in rep.to_json()["results"]["bench"]["oracle"]
    with pytest.raises(ValueError, match="engine: expected 'auto', 'paged' or 'hf'"):
        evaluate(target, {}, [prompt_file], config=_cfg(engine="cuda"))


def test_evaluate_confidence_auc_matches_the_reference(target, oracle, dspark_drafter, tmp_path):
    """The AUC in each drafter's summary against the pairwise reference on its own rounds:
    DSpark scores with its confidence head, the head-less oracle with q(d_k)."""
    from tests.eval.conftest import write_prompts
    from tests.reference.auc import conditional_auc_ref

    rows = [
        [int(x) for x in torch.randint(2, 256, (5,), generator=torch.Generator().manual_seed(i))]
        for i in range(6)
    ]
    bench = write_prompts(tmp_path / "bench.jsonl", rows)
    drafters = {"oracle": oracle, "dspark": dspark_drafter}
    rep = evaluate(
        target, drafters, [bench], config=_cfg(max_new_tokens=24, baseline=False, seed=11)
    )
    finite = 0
    for name, score in (("oracle", "draft_prob"), ("dspark", "confidence")):
        r = rep.results["bench"][name]
        assert r.acceptance["auc_score"] == score
        rounds = [(x.proposed, x.accepted, getattr(x, score)) for x in r.records if x.proposed]
        want = [conditional_auc_ref(rounds, k) for k in range(1, 5)]
        assert r.acceptance["auc"] == pytest.approx(want, abs=1e-12, nan_ok=True)
        finite += sum(a == a for a in want)
    assert finite >= 4  # the comparison is not NaN against NaN


def test_evaluate_methods_take_turns_batch_by_batch(target, oracle, prompt_file, monkeypatch):
    """Every method runs its batch k before any method runs its batch k + 1 (4 prompts in
    batches of 2), and the results do not depend on the order."""
    calls = []
    orig = methods_mod._Runner.run

    def run(self, m, rows, seed, max_new=None):
        if max_new is None:  # not a warm-up
            calls.append((m.name, seed))
        return orig(self, m, rows, seed, max_new)

    cfg = _cfg(temperature=1.0, plain=True)
    ref = evaluate(target, {"oracle": oracle}, [prompt_file], config=cfg)
    monkeypatch.setattr(methods_mod._Runner, "run", run)
    got = evaluate(target, {"oracle": oracle}, [prompt_file], config=cfg)
    names = ["plain", BASELINE, "oracle"]
    seeds = sorted({s for _, s in calls})
    assert calls == [(n, s) for s in seeds for n in names]
    for n in names:
        assert got.results["bench"][n].outputs == ref.results["bench"][n].outputs
    assert got.results["bench"]["oracle"].acceptance == ref.results["bench"]["oracle"].acceptance
