"""File helpers: atomic writes of files and whole directories (nothing half-written is ever left
under the final name, and an overwrite never destroys the old artifact before the new one is
complete) and streaming checksums."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "atomic_dir",
    "atomic_torch_save",
    "atomic_write",
    "atomic_write_json",
    "atomic_write_npz",
    "check_file",
    "file_sha256",
    "load_json",
    "recover_dir",
    "swap_dir",
    "tmp_dir_name",
    "truncate_jsonl",
]

# Read once at import (os.umask can only be read by setting it, which is not thread-safe).
_UMASK = os.umask(0o022)
os.umask(_UMASK)
# Names of the temporaries next to a destination ``name``: ``.name.tmp-*`` is a write in progress
# (or killed), ``.name.old-*`` the previous artifact while a directory swap is under way.
_TMP, _OLD = ".tmp-", ".old-"


def _fsync(path: str | os.PathLike[str], directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _owned_elsewhere(pid: str) -> bool:
    return pid.isdigit() and int(pid) != os.getpid() and _alive(int(pid))


# Directories whose stray temporary files this process has already removed (see atomic_write).
_swept: set[Path] = set()


def _sweep_files(directory: Path) -> None:
    """Remove the temporary files (``.name.tmp-<pid>-*``) of dead writers in ``directory``."""
    with os.scandir(directory) as it:
        for e in it:
            i = e.name.rfind(_TMP)
            pid = e.name[i + len(_TMP) :].split("-", 1)[0]
            stray = e.name.startswith(".") and i > 0 and e.is_file(follow_symlinks=False)
            if stray and not _owned_elsewhere(pid):
                os.unlink(e.path)


def _strays(path: Path, kind: str) -> list[Path]:
    """Temporaries of ``path`` of one kind not owned by another live process (a live writer's
    are its own business; this process's are leftovers of an abandoned write)."""
    prefix = f".{path.name}{kind}"
    if not path.parent.is_dir():
        return []
    out = []
    with os.scandir(path.parent) as it:
        for e in it:
            pid = e.name[len(prefix) :].split("-", 1)[0]
            if e.name.startswith(prefix) and not _owned_elsewhere(pid):
                out.append(Path(e.path))
    return sorted(out)


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        p.unlink(missing_ok=True)


def recover_dir(path: str | os.PathLike[str]) -> Path:
    """Finish a directory swap of :func:`atomic_dir` that was killed between its two renames.

    When ``path`` is missing but the previous artifact was renamed aside (``.name.old-*``), it
    is renamed back, so readers always see a complete artifact. Returns ``Path(path)``.
    """
    path = Path(path)
    if not path.exists():
        old = _strays(path, _OLD)
        if old:
            os.replace(max(old, key=lambda p: p.stat().st_mtime), path)
    return path


def _clean_strays(path: Path) -> None:
    """Remove what killed writes to ``path`` left behind (after restoring an aside artifact)."""
    recover_dir(path)
    for p in _strays(path, _TMP) + _strays(path, _OLD):
        _remove(p)


def tmp_dir_name(path: str | os.PathLike[str]) -> Path:
    """A fresh temporary name beside ``path`` (``.name.tmp-<pid>-<rand>``) that the next write
    to ``path`` removes if this process dies before swapping it in (see :func:`swap_dir`)."""
    path = Path(path)
    _clean_strays(path)
    return path.with_name(f".{path.name}{_TMP}{os.getpid()}-{secrets.token_hex(4)}")


def atomic_write(path: str | os.PathLike[str], write: Callable[[str], object]) -> None:
    """Call ``write(tmp_path)`` on a temporary file next to ``path``, then rename it over ``path``.

    The temporary file is fsynced before the rename and removed if ``write`` raises, so a crash
    leaves either the old file or the new one, never a partial one. Temporary files that killed
    writers left in ``path``'s directory are removed by this process's first write there (one
    directory scan per process, not per file). The file gets the usual permissions (``0o666`` minus
    the umask; ``mkstemp`` alone would leave it owner-only).
    """
    path = Path(path)
    if path.parent.resolve() not in _swept:
        _sweep_files(path.parent)
        _swept.add(path.parent.resolve())
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}{_TMP}{os.getpid()}-", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)
        _fsync(tmp)
        os.replace(tmp, path)
        _fsync(path.parent, directory=True)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_json(path: str | os.PathLike[str], obj: Any, indent: int | None = 1) -> None:
    """Write ``obj`` as JSON with :func:`atomic_write`."""
    text = json.dumps(obj, indent=indent) + "\n"
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def atomic_write_npz(path: str | os.PathLike[str], **arrays: Any) -> None:
    """``np.savez`` with :func:`atomic_write` (via a file object: no ``.npz`` suffix is added)."""
    import numpy as np

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    atomic_write(path, write)


def load_json(path: str | os.PathLike[str], required: tuple[str, ...] = ()) -> Any:
    """Read a JSON file; with ``required``, it must be an object holding those keys.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ValueError
        The file is not valid UTF-8 JSON (e.g. truncated) or lacks a required key; the message
        names the file.
    """
    path = Path(path)
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON (truncated or corrupted?): {e}") from None
    if required:
        if not isinstance(obj, dict):
            raise ValueError(f"{path}: expected a JSON object, got {type(obj).__name__}")
        missing = [k for k in required if k not in obj]
        if missing:
            raise ValueError(f"{path}: incomplete, missing keys {missing}")
    return obj


def truncate_jsonl(path: str | os.PathLike[str], keep: Callable[[Any], bool]) -> None:
    """Cut a JSON-lines file after its last complete record for which ``keep(record)`` holds.

    What follows (a torn or invalid tail, records about to be redone) is cut off with one
    ``truncate``; the file is never rewritten, so a kill here loses nothing that is kept. An
    invalid line before the cut is left in place with a warning naming the file and line.
    """
    path = Path(path)
    if not path.is_file():
        return
    cut, pos, last, bad = 0, 0, 0, []
    with path.open("rb") as f:
        for n, line in enumerate(f, 1):
            pos += len(line)
            try:
                good = line.endswith(b"\n") and bool(keep(json.loads(line)))
            except (ValueError, KeyError, TypeError):
                good = False
            if good:
                cut, last = pos, n
            else:
                bad.append(n)
    bad = [n for n in bad if n < last]
    if bad:
        warnings.warn(f"{path}: invalid lines {bad} kept as they are", RuntimeWarning, stacklevel=2)
    if cut < pos:
        os.truncate(path, cut)


def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save`` with :func:`atomic_write`."""
    import torch

    atomic_write(path, lambda tmp: torch.save(obj, tmp))


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Build a directory beside ``path`` and swap it in with one rename when the block ends.

    Yields an empty temporary directory (``.name.tmp-<pid>-<rand>`` next to ``path``). On a
    normal exit its files are fsynced and it is renamed to ``path``; an existing ``path`` is
    first renamed aside (``.name.old-*``) and deleted only once the new one is in place. A kill
    at any instant therefore leaves the old or the new complete artifact (:func:`recover_dir`
    renames an aside artifact back when the kill fell between the two renames). If the block
    raises, the temporary directory is removed and ``path`` is untouched. Leftovers of a killed
    earlier write to ``path`` are removed first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_dir_name(path)
    tmp.mkdir()
    try:
        yield tmp
        swap_dir(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


def swap_dir(tmp: str | os.PathLike[str], path: str | os.PathLike[str]) -> None:
    """Fsync the finished directory ``tmp`` (beside ``path``) and rename it to ``path``.

    An existing ``path`` is first renamed aside (``.name.old-*``) and deleted only once the new
    one is in place (:func:`recover_dir` undoes a kill between the two renames).
    """
    tmp, path = Path(tmp), Path(path)
    for p in tmp.rglob("*"):
        _fsync(p, directory=p.is_dir())
    _fsync(tmp, directory=True)
    os.chmod(tmp, 0o777 & ~_UMASK)
    old = None
    if path.exists():
        old = path.with_name(f".{path.name}{_OLD}{os.getpid()}-{secrets.token_hex(4)}")
        os.replace(path, old)
    os.replace(tmp, path)
    _fsync(path.parent, directory=True)
    if old is not None:
        _remove(old)


def check_file(
    path: Path,
    meta: dict[str, Any],
    listed_in: str,
    *,
    checksum: bool = True,
    what: str = "path",
    missing: type[Exception] = FileNotFoundError,
) -> None:
    """Check ``path`` against its manifest entry ``meta`` (``bytes`` and ``sha256``).

    Raises ``missing`` when the file is absent and ValueError when its size (or, with
    ``checksum``, its SHA-256) differs; messages start with ``what`` and name the file and the
    manifest ``listed_in``.
    """
    if not path.is_file():
        raise missing(f"{what}: {path} is listed in {listed_in} but missing")
    if path.stat().st_size != meta["bytes"]:
        raise ValueError(
            f"{what}: {path} has {path.stat().st_size} bytes, {listed_in} says {meta['bytes']} "
            "(truncated or corrupted)"
        )
    if checksum and file_sha256(path) != meta["sha256"]:
        raise ValueError(f"{what}: {path} fails its SHA-256 checksum in {listed_in} (corrupted)")


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes, read in 4 MiB blocks."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()
