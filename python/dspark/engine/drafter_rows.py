"""The drafter's batched state beside the engine: which rows it holds, and what it has not
been told yet.

The drafter state holds one row per decoding request, in :attr:`DrafterRows.rows` order. What
the target computed (its feature layers at each kept position, and the next token there) is
*recorded* per request after every step and *committed* to the drafter only when the engine
drafts (:meth:`DrafterRows.flush`): one batched commit covers every step since the last one, so
steps that draft nothing (``DraftHorizon`` chose 0, or ``K = 0``) cost the drafter nothing.
Requests whose prompt was just prefilled wait in :attr:`joining` with their prompt's features
and join the state at the next flush; requests that leave are dropped in one ``select``.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["DrafterRows"]


class DrafterRows:
    """Rows of ``drafter``'s state and the per-request features not yet committed."""

    def __init__(self, drafter: Any, device: torch.device) -> None:
        self.drafter, self.device = drafter, device
        self.state = drafter.new_state(0)
        self.rows: list[str] = []  # request ids of the state's rows
        self.joining: list[str] = []  # prefilled, decoding, not yet in the state
        self._dropped: set[str] = set()
        self._feats: dict[str, list[torch.Tensor]] = {}  # uncommitted features per request
        self._next: dict[str, list[int]] = {}  # the token after each of those positions

    def decoding(self) -> list[str]:
        """Decoding requests in state order (then the ones that join at the next flush)."""
        return [r for r in self.rows if r not in self._dropped] + self.joining

    def add_features(self, rid: str, feats: torch.Tensor) -> None:
        """Target features of ``rid``'s newly computed positions (prefill chunks, kept rows)."""
        self._feats.setdefault(rid, []).append(feats.detach().clone())

    def add_next(self, rid: str, ids: list[int]) -> None:
        self._next.setdefault(rid, []).extend(max(int(t), 0) for t in ids)  # -1: padding

    def ready(self, rid: str, next_ids: list[int]) -> None:
        """``rid``'s prompt is in (its features recorded); it decodes from the next step."""
        self.add_next(rid, next_ids)
        self.joining.append(rid)

    def drop(self, rid: str) -> None:
        """``rid`` left the batch (finished, aborted, preempted): forget it."""
        self._feats.pop(rid, None)
        self._next.pop(rid, None)
        if rid in self.joining:
            self.joining.remove(rid)
        elif rid in self.rows:
            self._dropped.add(rid)

    def flush(self) -> Any:
        """Commit everything recorded and let ``joining`` in; returns the state, whose rows are
        then exactly :meth:`decoding`."""
        self._select()
        if self.rows:
            self._commit(self.state, self.rows)
        if self.joining:
            state = self.drafter.new_state(len(self.joining))
            self._commit(state, self.joining)
            self.drafter.join(self.state, state)
            self.rows += self.joining
            self.joining = []
        return self.state

    def _select(self) -> None:
        if not self._dropped:
            return
        keep = [i for i, rid in enumerate(self.rows) if rid not in self._dropped]
        if len(keep) < len(self.rows):
            idx = torch.tensor(keep, dtype=torch.long, device=self.device)
            self.drafter.select(self.state, idx)
            self.rows = [self.rows[i] for i in keep]
        self._dropped.clear()

    def _commit(self, state: Any, rids: list[str]) -> None:
        feats = [torch.cat(self._feats.pop(r)) for r in rids]
        nxt = [self._next.pop(r) for r in rids]
        counts = [f.shape[0] for f in feats]
        if any(c != len(n) for c, n in zip(counts, nxt, strict=True)):
            raise RuntimeError("drafter rows: features and next tokens out of step (engine bug)")
        if min(counts) < 1:
            raise RuntimeError("drafter rows: a row has nothing to commit (engine bug)")
        pad = torch.nn.utils.rnn.pad_sequence
        f = pad(feats, batch_first=True)
        ids = pad([torch.tensor(n, dtype=torch.long) for n in nxt], batch_first=True)
        self.drafter.commit(state, f, ids.to(self.device), torch.tensor(counts, device=self.device))
