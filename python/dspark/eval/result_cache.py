"""Per-prompt result cache: one JSON file per (benchmark, method, prompt), written atomically.

A run can be interrupted and resumed: each entry records a fingerprint of the settings that
produced it and the prompt's content hash; an entry that is unreadable, truncated or produced
under other settings is ignored (and recomputed), never trusted.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from dspark.utils.io import atomic_write_json

__all__ = ["ResultCache", "fingerprint"]

SCHEMA = 1


def fingerprint(settings: dict[str, Any]) -> str:
    """Stable short hash of JSON-serialisable settings."""
    blob = json.dumps(settings, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


class ResultCache:
    """Cache rooted at ``root`` (None disables it: every lookup misses, writes are dropped)."""

    def __init__(self, root: str | os.PathLike[str] | None) -> None:
        self.root = None if root is None else Path(root)
        self.invalid: list[str] = []  # entries found but rejected (for the report's notes)

    def _path(self, benchmark: str, method: str, index: int) -> Path:
        assert self.root is not None
        return self.root / _safe(benchmark) / _safe(method) / f"{index:06d}.json"

    def load(
        self, benchmark: str, method: str, index: int, digest: str, settings_fp: str
    ) -> dict[str, Any] | None:
        """The cached payload, or None when missing or invalid (validated before use)."""
        if self.root is None:
            return None
        path = self._path(benchmark, method, index)
        if not path.is_file():
            return None
        try:
            with path.open(encoding="utf-8") as f:
                entry = json.load(f)
            ok = (
                isinstance(entry, dict)
                and entry.get("schema") == SCHEMA
                and entry.get("prompt") == digest
                and entry.get("settings") == settings_fp
                and isinstance(entry.get("payload"), dict)
            )
        except (OSError, ValueError, UnicodeDecodeError):
            ok = False
        if not ok:
            self.invalid.append(str(path))
            return None
        return entry["payload"]

    def store(
        self,
        benchmark: str,
        method: str,
        index: int,
        digest: str,
        settings_fp: str,
        payload: dict[str, Any],
    ) -> None:
        if self.root is None:
            return
        entry = {"schema": SCHEMA, "prompt": digest, "settings": settings_fp, "payload": payload}
        path = self._path(benchmark, method, index)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, entry, indent=None)


def _safe(name: str) -> str:
    """A path component from a benchmark/method name (no separators, no leading dots)."""
    out = "".join(c if c.isalnum() or c in "-_.=" else "_" for c in name).lstrip(".")
    return out or "_"
