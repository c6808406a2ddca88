"""A flipped byte or a truncation in any artifact file is detected on load (by default), with a
message naming the file; a corrupted latest trainer checkpoint falls back to the previous one."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import torch

from dspark.models import Drafter, build_drafter
from dspark.scheduler import SpsTable
from dspark.training import CacheWriter, TargetCache, TrainConfig, Trainer
from dspark.utils.io import truncate_jsonl
from dspark.zoo.target_lm import train_target
from tests import _artifact_scenarios as sc


def flip(p: Path, at: int = -10) -> None:
    data = bytearray(p.read_bytes())
    data[at] ^= 0xFF
    p.write_bytes(bytes(data))


def truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[: max(1, p.stat().st_size // 2)])


@pytest.fixture(scope="module")
def target():
    return sc.target()


@pytest.mark.parametrize("name", ["model.safetensors", "config.json", "checksums.json"])
@pytest.mark.parametrize("damage", [flip, truncate])
def test_drafter_checkpoint_corruption_names_the_file(tmp_path, target, name, damage):
    build_drafter("dflash", target, num_layers=1).save_pretrained(tmp_path)
    damage(tmp_path / name)
    with pytest.raises(ValueError, match=name.replace(".", r"\.")):
        Drafter.from_pretrained(tmp_path, target)


def test_drafter_checkpoint_verify_false_skips_the_checksums(tmp_path, target):
    d = build_drafter("dflash", target, num_layers=1)
    d.save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps(cfg, indent=4))  # same content, new bytes
    with pytest.raises(ValueError, match=r"config\.json has \d+ bytes"):
        Drafter.from_pretrained(tmp_path, target)
    assert Drafter.from_pretrained(tmp_path, target, verify=False).config == d.config


def test_incomplete_drafter_config_is_a_value_error_naming_it(tmp_path, target):
    build_drafter("dflash", target, num_layers=1).save_pretrained(tmp_path)
    (tmp_path / "config.json").write_text('{"kind": "dflash"}')
    with pytest.raises(ValueError, match=r"config\.json is incomplete"):
        Drafter.from_pretrained(tmp_path, target, verify=False)


def test_corrupted_latest_trainer_checkpoint_falls_back_with_a_warning(tmp_path):
    sc._train(tmp_path / "a")
    ckpts = sorted((tmp_path / "a").glob("step-*"))
    assert [c.name for c in ckpts] == ["step-00000002", "step-00000004", "step-00000005"]
    flip(ckpts[-1] / "trainer.pt")
    tr = Trainer(sc.train_config(tmp_path / "a"), target=sc.target(), source=sc.samples(8, seed=3))
    with pytest.warns(RuntimeWarning, match=r"step-00000005.*trainer\.pt.*step-00000004"):
        assert tr.resume()
    assert tr.step == 4
    for c in ckpts:
        flip(c / "model.safetensors")
    with pytest.raises(ValueError, match="none is loadable"):
        tr.resume()


def test_trainer_rejects_a_corrupted_cache_by_default(tmp_path, target):
    sc._write_cache(tmp_path / "cache", target, 3, seed=0)
    flip(next((tmp_path / "cache").glob("shard-*.safetensors")))
    cfg = TrainConfig(
        kind="dflash",
        target="in-memory",
        cache=str(tmp_path / "cache"),
        output_dir=str(tmp_path / "run"),
        drafter={"num_layers": 1, "block_size": 4, "feature_layers": sc.LAYERS},
        global_batch=2,
        micro_batch=2,
        progress=False,
    )
    with pytest.raises(ValueError, match=r"shard-00000\.safetensors fails its SHA-256"):
        Trainer(cfg, target=target)
    assert len(Trainer(cfg, target=target, verify_cache=False).source) == 3


@pytest.mark.parametrize("damage", [truncate, lambda p: p.write_text('{"version": 1}')])
def test_cache_manifest_damage_names_the_manifest(tmp_path, target, damage):
    sc._write_cache(tmp_path / "cache", target, 3, seed=0)
    damage(tmp_path / "cache" / "manifest.json")
    with pytest.raises(ValueError, match=r"manifest\.json"):
        TargetCache(tmp_path / "cache")


def test_cache_overwrite_keeps_the_old_cache_until_close(tmp_path, target):
    sc._write_cache(tmp_path / "cache", target, 3, seed=0)
    w = CacheWriter(tmp_path / "cache", target, sc.LAYERS, overwrite=True, shard_tokens=8)
    for s in sc.samples(5, seed=1):
        w.add(s["input_ids"], s["loss_mask"], s["features"], s["last_hidden"])
    assert len(TargetCache(tmp_path / "cache", verify=True)) == 3  # shards flushed beside it
    w.close()
    assert len(TargetCache(tmp_path / "cache", verify=True)) == 5
    assert os.listdir(tmp_path) == ["cache"]


def test_sps_table_damage_names_the_file_and_save_uses_umask_permissions(tmp_path):
    p = tmp_path / "sps.json"
    SpsTable([1, 2, 4], [100.0, 90.0, 70.0]).save(p)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~umask
    truncate(p)
    with pytest.raises(ValueError, match=r"sps\.json"):
        SpsTable.load(p)
    p.write_text('{"format": "dspark-sps"}')
    with pytest.raises(ValueError, match=r"sps\.json"):
        SpsTable.load(p)


@pytest.mark.parametrize("damage", [flip, truncate])
def test_zoo_target_checkpoint_corruption_names_the_file(tmp_path, damage):
    tokens = torch.randint(0, 300, (5000,), generator=torch.Generator().manual_seed(0))
    stream = tokens.numpy().astype("uint16")
    train_target(tmp_path, sc._ZOO, stream, stop_after=2, progress=False)
    damage(tmp_path / "checkpoint" / "state.pt")
    with pytest.raises(ValueError, match=r"state\.pt"):
        train_target(tmp_path, sc._ZOO, stream, progress=False)


def test_resume_cuts_a_torn_log_tail(tmp_path):
    state, log = sc._train(tmp_path / "a")
    path = tmp_path / "a" / "log.jsonl"
    text = path.read_text()
    path.write_text(text + '{"step": 6, "lo')  # killed mid-write
    again, again_log = sc._train(tmp_path / "a")  # resumes at the last step: nothing to redo
    assert sc.same_state(again, state)
    assert again_log == log
    assert path.read_text() == text


def test_truncate_jsonl_keeps_a_bad_middle_line_with_a_warning(tmp_path):
    path = tmp_path / "log.jsonl"
    good = [json.dumps({"step": s}) + "\n" for s in (1, 2, 3, 4)]
    path.write_text("".join(good[:2]) + "not json\n" + "".join(good[2:]) + '{"step": 5, "lo')
    with pytest.warns(RuntimeWarning, match=r"log\.jsonl: invalid lines \[3\]"):
        truncate_jsonl(path, lambda r: r["step"] <= 3)
    assert path.read_text() == "".join(good[:2]) + "not json\n" + good[2]
    truncate_jsonl(path, lambda r: r["step"] <= 0)  # a restart before the first checkpoint
    assert path.read_text() == ""
