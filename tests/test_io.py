"""dspark.utils.io: atomic writes keep the old file on failure and get ordinary permissions."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from dspark.utils.io import atomic_write, file_sha256


def test_atomic_write_replaces_and_uses_umask_permissions(tmp_path):
    p = tmp_path / "x.bin"
    atomic_write(p, lambda t: Path(t).write_bytes(b"new"))
    assert p.read_bytes() == b"new"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~umask
    assert [q.name for q in tmp_path.iterdir()] == ["x.bin"]


def test_atomic_write_failure_keeps_the_old_file_and_no_temporary(tmp_path):
    p = tmp_path / "x.bin"
    p.write_bytes(b"old")

    def boom(t):
        Path(t).write_bytes(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(p, boom)
    assert p.read_bytes() == b"old"
    assert [q.name for q in tmp_path.iterdir()] == ["x.bin"]


def test_file_sha256_matches_hashlib(tmp_path):
    data = os.urandom(5 << 20)  # spans more than one 4 MiB block
    (tmp_path / "f").write_bytes(data)
    assert file_sha256(tmp_path / "f") == hashlib.sha256(data).hexdigest()


def test_atomic_write_json_and_npz_round_trip(tmp_path):
    import json

    import numpy as np

    from dspark.utils.io import atomic_write_json, atomic_write_npz

    atomic_write_json(tmp_path / "r.json", {"a": [1, 2]})
    assert json.loads((tmp_path / "r.json").read_text()) == {"a": [1, 2]}
    atomic_write_npz(tmp_path / "x.npz", ids=np.arange(5, dtype=np.uint16), n=3)
    with np.load(tmp_path / "x.npz") as f:
        assert f["ids"].tolist() == [0, 1, 2, 3, 4] and int(f["n"]) == 3
    assert sorted(q.name for q in tmp_path.iterdir()) == ["r.json", "x.npz"]


def test_atomic_dir_swaps_a_complete_directory_in(tmp_path):
    from dspark.utils.io import atomic_dir

    dest = tmp_path / "ckpt"
    with atomic_dir(dest) as d:
        assert d.parent == tmp_path and d.name.startswith(".ckpt.tmp-")
        (d / "a").write_text("old")
    with atomic_dir(dest) as d:
        assert (dest / "a").read_text() == "old"  # the old one stays until the swap
        (d / "b").write_text("new")
    assert sorted(p.name for p in dest.iterdir()) == ["b"]
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]


def test_atomic_dir_failure_keeps_the_old_directory(tmp_path):
    from dspark.utils.io import atomic_dir

    dest = tmp_path / "ckpt"
    dest.mkdir()
    (dest / "a").write_text("old")

    def write():
        with atomic_dir(dest) as d:
            (d / "a").write_text("partial")
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write()
    assert (dest / "a").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]


def test_strays_of_a_dead_writer_are_removed_and_an_aside_copy_restored(tmp_path):
    from dspark.utils.io import atomic_dir, atomic_write, recover_dir

    dead = 2**22 + 12345  # above the default pid_max: no live process has this id
    (tmp_path / f".f.tmp-{dead}-abcd").write_text("junk")
    atomic_write(tmp_path / "f", lambda t: Path(t).write_text("x"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]
    # Killed between the two renames of a swap: only the aside copy of "d" exists.
    aside = tmp_path / f".d.old-{dead}-abcd"
    aside.mkdir()
    (aside / "a").write_text("old")
    (tmp_path / f".d.tmp-{dead}-ef01").mkdir()
    assert (recover_dir(tmp_path / "d") / "a").read_text() == "old"
    with atomic_dir(tmp_path / "d") as d:
        (d / "a").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "f"]


def test_load_json_names_the_file(tmp_path):
    from dspark.utils.io import load_json

    p = tmp_path / "m.json"
    p.write_text('{"a": 1, "b"')
    with pytest.raises(ValueError, match=r"m\.json: not valid JSON"):
        load_json(p)
    p.write_text('{"a": 1}')
    with pytest.raises(ValueError, match=r"m\.json: incomplete, missing keys \['b'\]"):
        load_json(p, required=("a", "b"))


def test_atomic_torch_save_round_trip(tmp_path):
    import torch

    from dspark.utils.io import atomic_torch_save

    atomic_torch_save({"w": torch.arange(3)}, tmp_path / "s.pt")
    assert torch.equal(torch.load(tmp_path / "s.pt")["w"], torch.arange(3))
    assert [p.name for p in tmp_path.iterdir()] == ["s.pt"]
