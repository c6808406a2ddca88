"""Incremental detokenization equals decoding everything at once, stop strings cut exactly."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from dspark.serve.text import IncrementalText
from tests._tiny import tiny_tokenizer

TOK = tiny_tokenizer()


def _run(ids, splits, stops=None):
    text = IncrementalText(TOK, stops)
    out, i = [], 0
    for n in [*splits, len(ids)]:
        chunk = ids[i : i + n] if n else []
        i += len(chunk)
        done = i >= len(ids)
        delta, _, stopped = text.add(chunk, final=done)
        out.append(delta)
        if stopped or done:
            break
    return out, text


@settings(max_examples=150, deadline=None)
@given(
    st.text(alphabet="ab é漢字🙂\n", min_size=1, max_size=20),
    st.lists(st.integers(0, 4), max_size=12),
)
def test_chunks_concatenate_to_the_whole_decode(s, splits):
    ids = TOK(s, add_special_tokens=False).input_ids  # multi-byte characters span tokens
    out, _ = _run(ids, splits)
    assert "".join(out) == TOK.decode(ids) == s
    assert all("\ufffd" not in d for d in out)  # a character is never split across chunks


@settings(max_examples=150, deadline=None)
@given(
    st.text(alphabet="abc é", min_size=1, max_size=24),
    st.text(alphabet="abc", min_size=1, max_size=3),
    st.lists(st.integers(1, 3), max_size=12),
)
def test_stop_string_cuts_before_its_first_occurrence(s, stop, splits):
    ids = TOK(s, add_special_tokens=False).input_ids
    out, text = _run(ids, splits, [stop])
    want = s[: s.index(stop)] if stop in s else s
    assert "".join(out) == want
    assert text.stopped == (stop in s)
