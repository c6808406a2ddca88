"""Incremental detokenization with stop strings, for streaming responses.

Text is decoded from a sliding window of ids (vLLM's prefix/read offsets): a token whose bytes
do not yet form whole characters (``"\\ufffd"`` at the end) waits for the next one, so a
multi-byte character is never split across chunks. With stop strings, the last
``max(len(stop)) - 1`` characters are held back until they cannot start a stop string; the
text is cut before the first stop string found and the request ends there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["IncrementalText"]


class IncrementalText:
    """Accumulates a request's output ids into text, returning each step's new characters."""

    def __init__(self, tokenizer: Any, stops: Sequence[str] | None = None) -> None:
        self.tok = tokenizer
        self.stops = [s for s in (stops or []) if s]
        self.hold = max((len(s) for s in self.stops), default=1) - 1
        self.ids: list[int] = []
        self.text = ""
        self.sent = 0  # characters already returned
        self.num_tokens = 0  # tokens that count as output (up to a stop string)
        self.stopped = False
        self._prefix = 0
        self._read = 0

    def _decode(self, ids: list[int]) -> str:
        return self.tok.decode(ids, skip_special_tokens=True)

    def _piece(self, flush: bool = False) -> str:
        before = self._decode(self.ids[self._prefix : self._read])
        now = self._decode(self.ids[self._prefix :])
        if len(now) > len(before) and (flush or not now.endswith("\ufffd")):
            self._prefix, self._read = self._read, len(self.ids)
            return now[len(before) :]
        return ""

    def add(
        self, token_ids: Sequence[int], logprobs: Sequence[float] | None = None, final: bool = False
    ) -> tuple[str, list[tuple[str, float, int]], bool]:
        """Add one step's tokens; returns (new text, [(token text, logprob, offset)], stopped).

        ``final`` flushes held-back text (the request finished for another reason), including
        the replacement character of bytes that never completed a character.
        """
        if self.stopped:
            return "", [], True
        lps: list[tuple[str, float, int]] = []
        for j, t in enumerate(token_ids):
            self.ids.append(int(t))
            self.num_tokens += 1
            offset = len(self.text)
            piece = self._piece(flush=final and j == len(token_ids) - 1)
            self.text += piece
            if logprobs is not None:
                lps.append((piece, float(logprobs[j]), offset))
            if self.stops:
                start = max(0, offset - self.hold)
                hits = [i for i in (self.text.find(s, start) for s in self.stops) if i >= 0]
                if hits:
                    self.text = self.text[: min(hits)]
                    self.stopped = True
                    break
        if self.stopped or final or not self.stops:
            end = len(self.text)
        else:
            end = max(self.sent, len(self.text) - self.hold)
        delta = self.text[self.sent : end]
        self.sent = end
        return delta, lps, self.stopped
