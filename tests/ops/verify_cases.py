"""Random verify_batch inputs and the loop reference run on them (shared by the verify tests)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from tests.reference.verify import PhiloxRNG, RequestOutput, process_row, verify_request_ref


@dataclass
class Case:
    num_nodes: list[int]  # drafts per request
    vocab: int = 50
    tree: bool = False
    q_kind: str = "probs"  # "probs" | "logits" | "none" (deterministic)
    without_replacement: bool = False
    dtype: torch.dtype = torch.float32
    is_probs: bool = False
    temperature: list[float] | None = None  # None: all greedy
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    max_emit: list[int] | None = None
    sharpness: float = 3.0
    seed: int = 0
    extra: dict = field(default_factory=dict)


def random_parents(n: int, rng: np.random.Generator) -> list[int]:
    # Mostly shallow-and-wide near the root, like real draft trees.
    return [int(rng.integers(-1, i)) if i else -1 for i in range(n)]


def make_batch(case: Case) -> dict:
    rng = np.random.default_rng(case.seed)
    V, R = case.vocab, len(case.num_nodes)
    indptr = np.concatenate([[0], np.cumsum(case.num_nodes)]).astype(np.int32)
    N = int(indptr[-1])
    parents = []
    for n in case.num_nodes:
        parents += random_parents(n, rng) if case.tree else list(range(-1, n - 1))
    logits = rng.normal(size=(N + R, V)) * case.sharpness
    # Draft rows near the target row they predict (node i is drawn from the row of its parent).
    q_logits = np.zeros((N, V))
    tokens = np.zeros(N, dtype=np.int64)
    for r in range(R):
        n0 = indptr[r]
        for i in range(case.num_nodes[r]):
            par_row = n0 + r + 1 + parents[n0 + i]
            sib = [j for j in range(i) if parents[n0 + j] == parents[n0 + i]]
            if sib:  # siblings share the row they were drawn from
                q_logits[n0 + i] = q_logits[n0 + sib[0]]
            else:
                q_logits[n0 + i] = logits[par_row] + rng.normal(size=V) * 1.5
            q = np.exp(q_logits[n0 + i] - q_logits[n0 + i].max())
            if case.without_replacement:
                q[[tokens[n0 + j] for j in sib]] = 0
            tokens[n0 + i] = rng.choice(V, p=q / q.sum())
    target = torch.tensor(logits, dtype=torch.float32)
    if case.is_probs:
        target = torch.softmax(target, -1)
    q_probs = torch.softmax(torch.tensor(q_logits, dtype=torch.float32), -1)
    batch = {
        "target": target.to(case.dtype),
        "draft_tokens": torch.tensor(tokens, dtype=torch.int64),
        "draft_indptr": torch.tensor(indptr),
        "parents": torch.tensor(parents, dtype=torch.int32) if case.tree else None,
        "seed": torch.tensor(rng.integers(0, 2**62, size=R), dtype=torch.int64),
        "offset": torch.tensor(rng.integers(0, 2**40, size=R), dtype=torch.int64),
    }
    if case.q_kind == "probs":
        batch["draft_probs"] = q_probs.to(case.dtype)
    elif case.q_kind == "logits":
        batch["draft_logits"] = torch.tensor(q_logits, dtype=torch.float32).to(case.dtype)
    if case.temperature is not None:
        batch["temperature"] = torch.tensor(case.temperature, dtype=torch.float32)
    if case.top_k:
        batch["top_k"] = torch.full((R,), case.top_k, dtype=torch.int32)
    if case.top_p < 1:
        batch["top_p"] = torch.full((R,), case.top_p)
    if case.min_p > 0:
        batch["min_p"] = torch.full((R,), case.min_p)
    if case.max_emit is not None:
        batch["max_emit"] = torch.tensor(case.max_emit, dtype=torch.int32)
    if case.without_replacement:
        batch["draft_sampling"] = "without_replacement"
    if case.is_probs:
        batch["target_is_probs"] = True
    batch.update(case.extra)
    return batch


def reference_outputs(case: Case, batch: dict) -> list[RequestOutput]:
    """Run the loop reference on every request of a batch made by make_batch."""
    target = batch["target"].double().numpy()
    indptr = batch["draft_indptr"].tolist()
    tokens = batch["draft_tokens"].tolist()
    parents = None if batch["parents"] is None else batch["parents"].tolist()
    q = None
    if "draft_probs" in batch:
        q = batch["draft_probs"].double().numpy()
    elif "draft_logits" in batch:
        q = torch.softmax(batch["draft_logits"].double(), -1).numpy()
    outs = []
    for r in range(len(indptr) - 1):
        n0, n1 = indptr[r], indptr[r + 1]
        t = 0.0 if case.temperature is None else case.temperature[r]
        rows = [
            process_row(
                target[n0 + r + j],
                is_probs=case.is_probs,
                temperature=t,
                top_k=case.top_k,
                top_p=case.top_p,
                min_p=case.min_p,
            )
            for j in range(n1 - n0 + 1)
        ]
        outs.append(
            verify_request_ref(
                rows,
                tokens[n0:n1],
                None if parents is None else parents[n0:n1],
                PhiloxRNG(int(batch["seed"][r]), int(batch["offset"][r])),
                q_rows=None if q is None else q[n0:n1],
                without_replacement=case.without_replacement,
                greedy=t == 0,
                max_emit=None if case.max_emit is None else case.max_emit[r],
            )
        )
    return outs
