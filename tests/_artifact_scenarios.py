"""Kill scenarios for every artifact writer, run by ``python -m tests._artifact_scenarios ROOT``.

One process imports everything (and runs no torch computation, with one torch thread), then
forks one child per case, so a case costs a fork instead of a fresh interpreter (fork is safe:
no OpenMP pool exists yet). A case child writes an "old" artifact, arms a kill at the k-th
filesystem operation (``os.replace``/``rename``/``fsync``/``unlink``/``rmdir``/``truncate``, or a
training step) and writes the "new" one; a second child then loads what is on disk (or resumes
the run) and compares it with references rebuilt from the same seeds. ``results.json`` holds one
record per case; ``tests/test_artifacts_kill.py`` asserts on them.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import traceback
import warnings
from pathlib import Path

import torch

from dspark.models import Drafter, build_drafter
from dspark.scheduler import SpsTable
from dspark.training import CacheWriter, TargetCache, TrainConfig, Trainer
from dspark.training.feature_cache import merge_parts
from dspark.utils.io import atomic_dir, recover_dir
from dspark.zoo.target_lm import train_target
from tests._tiny import tiny_qwen3, tiny_zoo_target_config
from tests.training.test_trainer import _cfg

LAYERS = [0, 1, 2]
_OPS = ("replace", "rename", "fsync", "unlink", "rmdir", "truncate")


def arm(k: int) -> list[int]:
    """Count filesystem operations (and training steps); SIGKILL this process before the k-th."""
    count = [0]

    def tick() -> None:
        count[0] += 1
        if count[0] == k:
            os.kill(os.getpid(), signal.SIGKILL)

    def wrap(fn):
        def inner(*a, **kw):
            tick()
            return fn(*a, **kw)

        return inner

    for name in _OPS:
        setattr(os, name, wrap(getattr(os, name)))
    Trainer.train_step = wrap(Trainer.train_step)
    return count


def target():
    return tiny_qwen3(vocab=260, layers=4, logit_scale=8.0)


def samples(n: int, seed: int) -> list[dict[str, torch.Tensor]]:
    """Synthetic training samples with target features (deterministic in ``seed``)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        s = 10 + i % 4
        mask = torch.zeros(s, dtype=torch.bool)
        mask[3:] = True
        out.append(
            {
                "input_ids": torch.randint(0, 258, (s,), generator=g),
                "loss_mask": mask,
                "features": torch.randn(s, 3 * 64, generator=g),
                "last_hidden": torch.randn(s, 64, generator=g),
            }
        )
    return out


def same_state(a: dict, b: dict) -> bool:
    return sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)


# --- atomic_dir -------------------------------------------------------------------------------
def _fill(d: Path, tag: str, names: str) -> None:
    for n in names:
        (d / n).write_text(tag)


def dir_write(d: Path, k: int) -> list[int]:
    with atomic_dir(d / "w" / "art") as t:
        _fill(t, "old", "ab")
    count = arm(k)
    with atomic_dir(d / "w" / "art") as t:
        _fill(t, "new", "abc")
    return count


def dir_check(d: Path) -> dict:
    art = recover_dir(d / "w" / "art")
    got = {p.name: p.read_text() for p in art.iterdir()}
    state = {"ab": "old", "abc": "new"}.get("".join(sorted(got)))
    ok = state is not None and set(got.values()) == {state}
    with atomic_dir(art) as t:  # the next write removes what the killed one left
        _fill(t, "next", "a")
    return {"ok": ok and os.listdir(d / "w") == ["art"], "state": state, "seen": got}


# --- Drafter.save_pretrained ------------------------------------------------------------------
def _drafters(t):
    torch.manual_seed(0)
    old = build_drafter("dspark", t, num_layers=1, markov_rank=8, block_size=3)
    torch.manual_seed(1)
    new = build_drafter("dflash", t, num_layers=2, block_size=4)
    return old, new


def drafter_write(d: Path, k: int) -> list[int]:
    old, new = _drafters(target())
    old.save_pretrained(d / "ckpt")
    count = arm(k)
    new.save_pretrained(d / "ckpt")
    return count


def drafter_check(d: Path) -> dict:
    t = target()
    got = Drafter.from_pretrained(d / "ckpt", t)
    old, new = _drafters(t)
    ref, state = (old, "old") if got.config == old.config else (new, "new")
    ok = got.config == ref.config and same_state(got.state_dict(), ref.state_dict())
    new.save_pretrained(d / "ckpt")  # the next write removes what a killed one left
    return {"ok": ok and os.listdir(d) == ["ckpt"], "state": state}


# --- CacheWriter(overwrite=True) ---------------------------------------------------------------
def _write_cache(path: Path, t, n: int, seed: int, **kw) -> None:
    w = CacheWriter(path, t, LAYERS, feature_dtype="float32", last_dtype="float32", **kw)
    for s in samples(n, seed):
        w.add(s["input_ids"], s["loss_mask"], s["features"], s["last_hidden"])
    w.close()


def cache_write(d: Path, k: int) -> list[int]:
    t = target()
    _write_cache(d / "cache", t, 3, seed=0)
    count = arm(k)
    _write_cache(d / "cache", t, 5, seed=1, overwrite=True, shard_tokens=16)
    return count


def cache_check(d: Path) -> dict:
    cache = TargetCache(d / "cache", verify=True)
    n = len(cache)
    ref = samples(n, seed=0 if n == 3 else 1)
    ok = n in (3, 5) and all(
        torch.equal(cache[i]["input_ids"], ref[i]["input_ids"])
        and torch.equal(cache[i]["features"], ref[i]["features"])
        for i in range(n)
    )
    _write_cache(d / "cache", target(), 2, seed=2, overwrite=True)
    return {"ok": ok and os.listdir(d) == ["cache"], "state": {3: "old", 5: "new"}.get(n)}


def parts_write(d: Path, k: int) -> list[int]:
    """Two part writers (as two processes would) and the merge, over an existing cache."""
    t = target()
    _write_cache(d / "cache", t, 3, seed=0)
    count = arm(k)
    new = samples(5, seed=1)
    for r in (0, 1):
        w = CacheWriter(
            d / "cache",
            t,
            LAYERS,
            feature_dtype="float32",
            last_dtype="float32",
            overwrite=True,
            shard_tokens=16,
            part=f"r{r:05d}-",
        )
        for i in range(r, 5, 2):
            s = new[i]
            w.add(s["input_ids"], s["loss_mask"], s["features"], s["last_hidden"], sample_id=i)
        w.close()
    merge_parts(d / "cache", ["r00000-", "r00001-"])
    return count


# --- SpsTable.save ----------------------------------------------------------------------------
_TABLES = {"old": ([1, 2, 4], [100.0, 90.0, 70.0]), "new": ([1, 8, 16, 64], [99.0, 60, 40, 9])}


def sps_write(d: Path, k: int) -> list[int]:
    SpsTable(*_TABLES["old"]).save(d / "sps.json")
    count = arm(k)
    SpsTable(*_TABLES["new"]).save(d / "sps.json")
    return count


def sps_check(d: Path) -> dict:
    got = SpsTable.load(d / "sps.json").to_dict()
    state = next((s for s, a in _TABLES.items() if got == SpsTable(*a).to_dict()), None)
    SpsTable(*_TABLES["old"]).save(d / "sps.json")  # the next write removes a killed one's temp
    return {"ok": state is not None and os.listdir(d) == ["sps.json"], "state": state}


# --- drafter training (Trainer checkpoints + log.jsonl) ----------------------------------------
def train_config(out: Path) -> TrainConfig:
    # The trainer tests' configuration, over in-memory samples (``data`` is then unused).
    return _cfg("dspark", "in-memory", None, out, data="-", max_steps=5, save_every=2, log_every=1)


def _train(out: Path) -> list[dict]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tr = Trainer(train_config(out), target=target(), source=samples(8, seed=3))
        tr.run()
    if caught:
        raise AssertionError(f"unexpected warnings: {[str(w.message) for w in caught]}")
    log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    for r in log:
        r.pop("tokens_per_s")
    return [tr.drafter.state_dict(), log]


def train_write(d: Path, k: int) -> list[int]:
    count = arm(k)
    _train(d / "run")
    return count


def train_check(d: Path, ref: Path) -> dict:
    state, log = _train(d / "run")  # resume (or restart) and finish
    want_state, want_log = torch.load(ref, weights_only=False)
    return {"ok": same_state(state, want_state) and log == want_log, "state": "resumed"}


# --- zoo target training checkpoint ----------------------------------------------------------
_ZOO = tiny_zoo_target_config(num_layers=2, total_steps=5, checkpoint_every=2)


def _zoo(out: Path) -> dict:
    tokens = torch.randint(0, 300, (5000,), generator=torch.Generator().manual_seed(0))
    train_target(out, _ZOO, tokens.numpy().astype("uint16"), progress=False)
    return torch.load(out / "checkpoint" / "state.pt", weights_only=False)["model"]


def zoo_write(d: Path, k: int) -> list[int]:
    count = arm(k)
    _zoo(d / "zoo")
    return count


def zoo_check(d: Path, ref: Path) -> dict:
    return {"ok": same_state(_zoo(d / "zoo"), torch.load(ref, weights_only=False))}


# --- runner -----------------------------------------------------------------------------------
SCENARIOS = {  # name: (write, check, reference builder or None, max kill points)
    "atomic_dir": (dir_write, dir_check, None, 48),
    "drafter": (drafter_write, drafter_check, None, 48),
    "feature_cache": (cache_write, cache_check, None, 8),
    "cache_parts": (parts_write, cache_check, None, 8),
    "sps_table": (sps_write, sps_check, None, 6),
    "trainer": (train_write, train_check, _train, 6),
    "zoo_target": (zoo_write, zoo_check, _zoo, 5),
}


def _fork(fn) -> int:
    """Run ``fn()`` in a forked child; returns the wait status."""
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            fn()
        except BaseException:
            traceback.print_exc()
            code = 1
        os._exit(code)
    return os.waitpid(pid, 0)[1]


def run_case(name: str, d: Path, k: int, ref: Path | None) -> dict:
    write, check = SCENARIOS[name][:2]
    d.mkdir(parents=True)

    def child() -> None:
        count = write(d, k)
        (d.parent / f"{d.name}.ops").write_text(str(count[0]))

    status = _fork(child)
    killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    res_path = d.parent / f"{d.name}.json"

    def verify() -> None:
        try:
            res = check(d, ref) if ref is not None else check(d)
        except BaseException as e:
            res = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        res_path.write_text(json.dumps(res, default=str))

    _fork(verify)
    res = json.loads(res_path.read_text())
    return {**res, "k": k, "killed": killed, "clean_exit": os.WIFEXITED(status)}


def run_scenario(name: str, root: Path) -> list[dict]:
    ref = None
    if SCENARIOS[name][2] is not None:
        ref = root / f"{name}-ref.pt"
        build = SCENARIOS[name][2]
        _fork(lambda: torch.save(build(root / f"{name}-ref"), ref))
    first = run_case(name, root / f"{name}-k0", 0, ref)
    n = int((root / f"{name}-k0.ops").read_text())
    limit = SCENARIOS[name][3]
    # Always: after the first training step (before any checkpoint) or early in a save, and the
    # last operation (after the swap, where there is one).
    ks = {2, n}
    for seed in (0, 1, 2):
        ks |= set(random.Random(seed).sample(range(1, n + 1), min(n, -(-limit // 3))))
    return [first] + [run_case(name, root / f"{name}-k{k}", k, ref) for k in sorted(ks)]


def main(root: Path, names: list[str]) -> None:
    torch.set_num_threads(1)
    out = {name: run_scenario(name, root) for name in names}
    (root / "results.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:] or list(SCENARIOS))
