"""Trainer: loss decreases for all drafters, exact resume, multi-process equivalence, errors."""

from __future__ import annotations

import json
import math
import socket

import pytest
import torch

from dspark.models import Drafter
from dspark.training import TargetCache, TrainConfig, Trainer, build_cache, train, warmup_cosine
from tests.training.conftest import CONVERSATIONS, tiny_tokenizer

LAYERS = [0, 1, 2]
DRAFTER = {
    "dspark": {"num_layers": 1, "markov_rank": 8, "block_size": 4, "feature_layers": LAYERS},
    "dflash": {"num_layers": 1, "block_size": 4, "feature_layers": LAYERS},
    "eagle3": {"block_size": 3, "feature_layers": LAYERS},
}


@pytest.fixture(scope="module")
def cache_dir(target, tmp_path_factory):
    d = tmp_path_factory.mktemp("cache")
    build_cache(
        target,
        tiny_tokenizer(),
        CONVERSATIONS,
        d,
        LAYERS,
        feature_dtype="float32",
        last_dtype="float32",
        batch_size=4,
    )
    return d


def _cfg(kind, target_dir, cache_dir, out, **kw):
    base = dict(
        kind=kind,
        target=str(target_dir),
        cache=str(cache_dir) if cache_dir else None,
        output_dir=str(out),
        drafter=DRAFTER[kind],
        global_batch=4,
        micro_batch=2,
        lr=3e-3,
        warmup_ratio=0.25,
        num_anchors=16,
        max_steps=6,
        save_every=3,
        loss_chunk=8,
        progress=False,
    )
    base.update(kw)
    return TrainConfig(**base)


def _final_state(out, target):
    marker = (out / "latest").read_text().strip()
    return Drafter.from_pretrained(out / marker, target).state_dict()


@pytest.mark.parametrize("kind", ["dspark", "dflash", "eagle3"])
def test_loss_decreases(kind, target, target_dir, cache_dir, tmp_path):
    cfg = _cfg(kind, target_dir, cache_dir, tmp_path, max_steps=12, save_every=100)
    hist = train(cfg, target=target)
    assert len(hist) == 12
    first = sum(h["loss"] for h in hist[:2]) / 2
    last = sum(h["loss"] for h in hist[-2:]) / 2
    assert last < 0.9 * first, [round(h["loss"], 3) for h in hist]
    g = DRAFTER[kind]["block_size"]
    assert len(hist[-1]["accept"]) == g
    assert 1 <= hist[-1]["tau"] <= g + 1
    if kind != "dflash":
        # Losses that see the target distribution raise the acceptance estimate. (DFlash's hard
        # labels come from this synthetic, off-policy data, not from the random target.)
        assert hist[-1]["tau"] > hist[0]["tau"]
    assert (tmp_path / "log.jsonl").is_file()
    assert (tmp_path / "latest").is_file()


def test_resume_is_exact(target, target_dir, cache_dir, tmp_path):
    kw = dict(log_every=1)
    full = train(_cfg("dspark", target_dir, cache_dir, tmp_path / "a", **kw), target=target)
    # Interrupted after step 4 (checkpoint at 3): step 4 is redone after resuming.
    cfg_b = _cfg("dspark", target_dir, cache_dir, tmp_path / "b", **kw)
    first = train(cfg_b, target=target, stop_after=4)
    assert [h["step"] for h in first] == [1, 2, 3, 4]
    torch.manual_seed(1234)  # clobber global RNG: resume must not depend on it
    rest = train(cfg_b, target=target)
    assert [h["step"] for h in rest] == [4, 5, 6]
    for a, b in zip(full, first[:3] + rest, strict=True):
        assert a["loss"] == b["loss"], (a["step"], a["loss"], b["loss"])
    sa, sb = _final_state(tmp_path / "a", target), _final_state(tmp_path / "b", target)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)

    def curve(run):
        lines = (run / "log.jsonl").read_text().splitlines()
        return [(r["step"], r["loss"]) for r in map(json.loads, lines)]

    assert curve(tmp_path / "b") == curve(tmp_path / "a")  # the logged curve has no duplicates


def test_time_budget_stops_after_a_checkpoint_and_resumes_exactly(
    target, target_dir, cache_dir, tmp_path, monkeypatch
):
    import time

    import dspark.training.trainer as trainer_mod

    full = train(_cfg("dflash", target_dir, cache_dir, tmp_path / "a", log_every=1), target=target)
    ticks = iter(range(10**6))  # each clock read advances one "second"

    class FakeTime:
        perf_counter = staticmethod(time.perf_counter)
        monotonic = staticmethod(lambda: float(next(ticks)))

    monkeypatch.setattr(trainer_mod, "time", FakeTime)
    cfg = _cfg("dflash", target_dir, cache_dir, tmp_path / "b", log_every=1)
    first = Trainer(cfg, target=target).run(budget_seconds=2.5)
    # Read at start (0), then before each step (1, 2, 3 > 2.5): two steps, then a checkpoint at
    # step 2 although save_every is 3.
    assert [h["step"] for h in first] == [1, 2]
    assert (tmp_path / "b" / "latest").read_text().strip() == "step-00000002"
    monkeypatch.undo()
    rest = Trainer(cfg, target=target).run()
    assert [h["step"] for h in rest] == [3, 4, 5, 6]
    for a, b in zip(full, first + rest, strict=True):
        assert a["loss"] == b["loss"], (a["step"], a["loss"], b["loss"])


def test_bf16_precision_trains(target, target_dir, cache_dir, tmp_path):
    hist = train(
        _cfg("dspark", target_dir, cache_dir, tmp_path, precision="bf16", max_steps=2),
        target=target,
    )
    assert all(math.isfinite(h["loss"]) for h in hist)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn2(jobs: list, timeout: float = 180.0) -> None:
    """Run ``jobs`` on 2 spawned gloo processes; fail (never hang) after ``timeout`` seconds."""
    import time

    import torch.multiprocessing as mp

    from tests.training import _dist_worker

    ctx = mp.start_processes(
        _dist_worker.run,
        args=(2, _free_port(), jobs),
        nprocs=2,
        join=False,
        start_method="spawn",
    )
    deadline = time.monotonic() + timeout
    while not ctx.join(timeout=1.0):
        if time.monotonic() > deadline:
            for p in ctx.processes:  # only the processes this test started
                p.kill()
            pytest.fail(f"2-process job did not finish in {timeout} s")


def test_two_processes_match_one(target, target_dir, cache_dir, tmp_path):
    """2 gloo processes, replicated and FSDP-sharded, resuming a 1-process checkpoint, give the
    1-process result."""
    kw = dict(max_steps=4, save_every=2, micro_batch=1)
    train(_cfg("dspark", target_dir, cache_dir, tmp_path / "one", **kw), target=target)
    runs = []
    for fsdp in (False, True):
        two = _cfg("dspark", target_dir, cache_dir, tmp_path / f"two{fsdp}", fsdp=fsdp, **kw)
        t = Trainer(two, target=target)
        t.out.mkdir(parents=True)
        t.train_step()
        t.save()  # 1 step on 1 process, then 3 on 2 processes
        runs.append(two.to_dict())
    for job in runs:  # one spawn per job: a second process group in one process deadlocked
        _spawn2([job])
    sa = _final_state(tmp_path / "one", target)
    for fsdp in (False, True):
        assert (tmp_path / f"two{fsdp}" / "step-00000004").is_dir()
        sb = _final_state(tmp_path / f"two{fsdp}", target)
        for k in sa:
            torch.testing.assert_close(sb[k], sa[k], rtol=1e-4, atol=1e-5)


def test_cache_built_by_two_processes_matches(target_dir, cache_dir, tmp_path):
    job = {"target_dir": str(target_dir), "out": str(tmp_path / "cache2"), "layers": LAYERS}
    _spawn2([{"cache_job": job}])
    one, two = TargetCache(cache_dir), TargetCache(tmp_path / "cache2", verify=True)
    assert len(two.manifest["shards"]) == 2
    assert len(one) == len(two)
    for i in range(len(one)):
        a, b = one[i], two[i]
        assert torch.equal(a["input_ids"], b["input_ids"])
        assert torch.equal(a["loss_mask"], b["loss_mask"])
        # Other batch compositions pad differently: equal up to float rounding.
        torch.testing.assert_close(a["features"], b["features"], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(a["last_hidden"], b["last_hidden"], rtol=1e-5, atol=1e-5)


def test_online_mode_matches_cache(target, target_dir, cache_dir, data_file, tmp_path):
    common = dict(max_steps=1, save_every=100, warmup_ratio=0.0)
    a = train(_cfg("dflash", target_dir, cache_dir, tmp_path / "a", **common), target=target)
    cfg = _cfg("dflash", target_dir, None, tmp_path / "b", data=str(data_file), **common)
    # Same samples as the cache (build_cache's min_loss_tokens=2 drops none here).
    b = train(cfg, target=target)
    assert a[0]["loss"] == pytest.approx(b[0]["loss"], rel=1e-4)


def test_warmup_cosine_starts_from_peak():
    total, warm = 100, 10
    lrs = [warmup_cosine(s, total, warm) for s in range(total)]
    assert lrs[warm - 1] == 1.0
    assert lrs[warm] == 1.0
    assert all(x >= y for x, y in zip(lrs[warm:], lrs[warm + 1 :], strict=False))
    assert lrs[-1] < 0.01
    assert lrs[0] == pytest.approx(0.1)


def test_bad_configs_and_mismatched_cache(target, target_dir, cache_dir, tmp_path):
    with pytest.raises(ValueError, match="unknown fields"):
        TrainConfig.from_dict(
            {"kind": "dspark", "target": "t", "output_dir": "o", "cache": "c", "learning_rate": 1}
        )
    with pytest.raises(ValueError, match="missing required"):
        TrainConfig.from_dict({"kind": "dspark", "cache": "c"})
    with pytest.raises(ValueError, match="exactly one"):
        TrainConfig(kind="dspark", target="t", output_dir="o")
    with pytest.raises(ValueError, match="kind"):
        TrainConfig(kind="medusa", target="t", output_dir="o", cache="c")
    with pytest.raises(ValueError, match="micro_batch"):
        _cfg("dspark", target_dir, cache_dir, tmp_path, micro_batch=0)
    with pytest.raises(ValueError, match="global_batch"):
        Trainer(_cfg("dspark", target_dir, cache_dir, tmp_path, global_batch=5), target=target)
    with pytest.raises(ValueError, match="larger than the dataset"):
        Trainer(_cfg("dspark", target_dir, cache_dir, tmp_path, global_batch=16), target=target)
    bad = {**DRAFTER["dflash"], "feature_layers": [0, 1]}
    with pytest.raises(ValueError, match="feature layers"):
        Trainer(_cfg("dflash", target_dir, cache_dir, tmp_path, drafter=bad), target=target)
    assert len(TargetCache(cache_dir)) == len(CONVERSATIONS)
