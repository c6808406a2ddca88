"""Per-prompt result cache: atomic writes, validation on load."""

from __future__ import annotations

import pytest

from dspark.eval.result_cache import ResultCache, fingerprint


def test_cache_roundtrip_and_validation(tmp_path):
    c = ResultCache(tmp_path)
    fp = fingerprint({"a": 1})
    assert fp == fingerprint({"a": 1})
    assert fp != fingerprint({"a": 2})
    assert c.load("b", "m", 3, "digest", fp) is None  # missing: a miss, not an invalid entry
    c.store("b", "m", 3, "digest", fp, {"new_tokens": 5})
    assert c.load("b", "m", 3, "digest", fp) == {"new_tokens": 5}
    assert not list(tmp_path.rglob("*.tmp"))  # the temporary file was renamed away
    assert c.invalid == []
    # Other settings or another prompt under the same index: rejected.
    assert c.load("b", "m", 3, "digest", fingerprint({"a": 2})) is None
    assert c.load("b", "m", 3, "other", fp) is None
    assert len(c.invalid) == 2


@pytest.mark.parametrize(
    "content",
    ["", "{", "[]", '{"schema": 99, "prompt": "d", "settings": "s", "payload": {}}', "\xff"],
)
def test_cache_rejects_corrupt_entries(tmp_path, content):
    c = ResultCache(tmp_path)
    c.store("b", "m", 0, "d", "s", {"x": 1})
    (path,) = tmp_path.rglob("*.json")
    path.write_text(content, encoding="latin-1")
    assert c.load("b", "m", 0, "d", "s") is None
    assert c.invalid == [str(path)]


def test_cache_disabled_and_safe_names(tmp_path):
    off = ResultCache(None)
    off.store("b", "m", 0, "d", "s", {"x": 1})
    assert off.load("b", "m", 0, "d", "s") is None
    c = ResultCache(tmp_path)
    c.store("../evil", "a/b", 1, "d", "s", {"x": 1})
    (path,) = tmp_path.rglob("*.json")
    assert tmp_path in path.parents  # separators and leading dots cannot escape the root
