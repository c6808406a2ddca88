"""Training text from the Python standard library: source files (code) and docstrings plus the
pydoc topic texts (prose), split by file into train and held-out sets."""

from __future__ import annotations

import ast
import hashlib
import json
import sysconfig
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Corpus", "build_corpus", "stdlib_files"]


@dataclass
class Corpus:
    """Documents by split and domain ("code" or "prose")."""

    train: dict[str, list[str]]
    heldout: dict[str, list[str]]

    def write_prompts(
        self, path: str | Path, domain: str, *, num: int, chars: int, seed: int = 0
    ) -> None:
        """Held-out prompts in the ``{"turns": [...]}`` JSONL format (a document's opening)."""
        import random

        docs = [d for d in self.heldout[domain] if len(d) > chars]
        if not docs:
            raise ValueError(
                f"corpus: no held-out {domain} document longer than {chars} characters "
                "(too few files held out)"
            )
        random.Random(seed).shuffle(docs)
        lines = [json.dumps({"turns": [d[:chars]], "domain": domain}) for d in docs[:num]]
        Path(path).write_text("\n".join(lines) + "\n")


def stdlib_files(root: str | None = None) -> list[Path]:
    """Sorted standard-library .py files, without tests, site-packages and generated tables."""
    base = Path(root or sysconfig.get_paths()["stdlib"])
    skip = ("site-packages", "test", "tests", "idlelib", "lib2to3", "__pycache__", "encodings")
    out = []
    for p in sorted(base.rglob("*.py")):
        rel = p.relative_to(base).parts
        if any(s in rel[:-1] or rel[0] == s for s in skip) or p.name.startswith("test_"):
            continue
        if p.stat().st_size > 400_000:  # big generated tables
            continue
        out.append(p)
    return out


def _docstrings(source: str) -> list[str]:
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []
    docs = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            d = ast.get_docstring(node)
            if d and len(d) > 80:
                docs.append(d)
    return docs


def _heldout(key: str, fraction: float) -> bool:
    return int(hashlib.sha1(key.encode()).hexdigest()[:8], 16) / 2**32 < fraction


def build_corpus(
    root: str | None = None, *, heldout_fraction: float = 0.05, max_files: int | None = None
) -> Corpus:
    """Collect code (source files) and prose (docstrings and pydoc topics) from the stdlib."""
    train: dict[str, list[str]] = {"code": [], "prose": []}
    heldout: dict[str, list[str]] = {"code": [], "prose": []}
    files = stdlib_files(root)[:max_files]
    for p in files:
        try:
            src = p.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        split = heldout if _heldout(str(p.name), heldout_fraction) else train
        split["code"].append(src)
        split["prose"].extend(_docstrings(src))
    if max_files is None:
        try:
            from pydoc_data.topics import topics

            for name in sorted(topics):
                split = heldout if _heldout("topic:" + name, heldout_fraction) else train
                split["prose"].append(topics[name])
        except ImportError:
            pass
    return Corpus(train, heldout)
