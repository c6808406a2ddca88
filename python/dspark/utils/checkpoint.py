"""Checkpoint directories: written as one unit with a checksum manifest, verified on load.

A checkpoint (drafter weights + config, trainer state, zoo training state) is a directory built
beside its destination and swapped in with one rename (:func:`dspark.utils.io.atomic_dir`);
``checksums.json`` inside it records the SHA-256 and size of every other file. A directory
written before checksums existed (no ``checksums.json``) loads unverified.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path

from dspark.utils.io import atomic_dir, check_file, file_sha256, load_json, recover_dir

__all__ = ["CHECKSUMS", "checkpoint_dir", "newest_good", "verify_checkpoint"]

CHECKSUMS = "checksums.json"
_open_units: set[Path] = set()


@contextlib.contextmanager
def checkpoint_dir(path: str | os.PathLike[str], *, keep_others: bool = False) -> Iterator[Path]:
    """Yield a temporary directory; on exit write ``checksums.json`` and swap it in atomically.

    With ``keep_others``, entries of an existing ``path`` that the block did not write are
    carried over (hard links, not checksummed) instead of being dropped with the old directory,
    like writing the files into ``path`` would keep them. Writing a checkpoint into the
    directory of an open unit (e.g. a drafter saved inside a trainer checkpoint) adds its files
    to that unit instead of starting a second swap.
    """
    path = Path(path)
    if path.resolve() in _open_units:
        yield path
        return
    with atomic_dir(path) as tmp:
        key = tmp.resolve()
        _open_units.add(key)
        try:
            yield tmp
        finally:
            _open_units.discard(key)
        files = {
            p.relative_to(tmp).as_posix(): {"sha256": file_sha256(p), "bytes": p.stat().st_size}
            for p in sorted(tmp.rglob("*"))
            if p.is_file() and p.relative_to(tmp).as_posix() != CHECKSUMS
        }
        (tmp / CHECKSUMS).write_text(json.dumps({"format": 1, "files": files}, indent=1) + "\n")
        if keep_others and path.is_dir():
            for old in path.iterdir():
                new = tmp / old.name
                if new.exists() or new.is_symlink():
                    continue
                if old.is_dir() and not old.is_symlink():
                    shutil.copytree(old, new, symlinks=True, copy_function=os.link)
                elif old.is_symlink():
                    os.symlink(os.readlink(old), new)
                else:
                    os.link(old, new)


def newest_good(candidates: list[Path], required: tuple[str, ...] = ()) -> Path | None:
    """The first of ``candidates`` (newest first) that passes :func:`verify_checkpoint`.

    Corrupted newer ones are skipped with a warning naming them and the one used (so keep the
    previous checkpoint on disk); ValueError when none is good, None when there are none.
    """
    bad: list[str] = []
    for ckpt in candidates:
        try:
            verify_checkpoint(ckpt, required)
        except (OSError, ValueError) as e:
            bad.append(f"{ckpt} ({e})")
            continue
        if bad:
            warnings.warn(
                f"checkpoint: skipping corrupted {'; '.join(bad)}; using the previous good "
                f"one, {ckpt}",
                RuntimeWarning,
                stacklevel=2,
            )
        return ckpt
    if bad:
        raise ValueError(f"checkpoint: none is loadable: {'; '.join(bad)}")
    return None


def verify_checkpoint(
    path: str | os.PathLike[str], required: tuple[str, ...] = (), *, verify: bool = True
) -> Path:
    """Check a checkpoint directory; returns its path.

    Parameters
    ----------
    path : path-like
    required : tuple of str
        Files that must exist (checked even when ``verify`` is False).
    verify : bool
        Check every listed file's size and SHA-256 (False: only the required files' presence).

    Raises
    ------
    FileNotFoundError
        A required or listed file is missing.
    ValueError
        A file's size or checksum differs from ``checksums.json``, or the manifest itself is
        unreadable; the message names the file.
    """
    d = recover_dir(path)
    for name in required:
        if not (d / name).is_file():
            raise FileNotFoundError(f"path: {d} has no {name} (not a complete checkpoint)")
    if not verify or not (d / CHECKSUMS).is_file():
        return d
    manifest = load_json(d / CHECKSUMS, required=("files",))
    for rel, meta in manifest["files"].items():
        check_file(d / rel, meta, CHECKSUMS)
    return d
