"""verify_batch is lossless: exact enumeration of the reference rules against the target's own
autoregressive distribution (to 1e-6), chi-square tests of the kernel's output with stated alpha
and power, mutations that the tests must catch, and acceptance rate = 1 - TV(p, q).

Chain of evidence: the kernel equals the loop reference token for token (test_verify.py), the
reference's rules are exactly lossless (enumeration here), and the kernel's samples pass
goodness-of-fit tests powerful enough to see a 0.01 TV error.
"""

from __future__ import annotations

import itertools
import zlib
from collections import defaultdict

import numpy as np
import pytest
import torch

import dspark
from tests.reference.verify import enumerate_outputs, process_row, verify_request_ref
from tests.stats import chi2_power, chi2_pvalue

ALPHA = 1e-3  # false-alarm rate of every chi-square test here
N_ROUNDS = 200_000


class TinyLM:
    """A deterministic toy language model: logits(prefix) from a hash of the prefix."""

    def __init__(self, vocab: int, seed: int, scale: float = 1.5):
        self.vocab, self.seed, self.scale = vocab, seed, scale

    def logits(self, prefix: tuple[int, ...]) -> np.ndarray:
        h = zlib.crc32(np.array((self.seed, *prefix), dtype=np.int64).tobytes())
        return np.random.default_rng(h).normal(size=self.vocab) * self.scale


def draft_q(target: TinyLM, prefix: tuple[int, ...], mix: float = 0.6) -> np.ndarray:
    """A drafter correlated with the target (so drafts are often, not always, accepted)."""
    noise = TinyLM(target.vocab, target.seed + 1000).logits(prefix)
    x = mix * target.logits(prefix) + (1 - mix) * noise
    e = np.exp(x - x.max())
    return e / e.sum()


def node_prefix(parents: list[int], tokens: list[int], i: int) -> tuple[int, ...]:
    path = []
    while i >= 0:
        path.append(tokens[i])
        i = parents[i]
    return tuple(reversed(path))


def exact_stream(
    target: TinyLM,
    parents: list[int],
    k: int,
    *,
    mode: str,
    proc: dict,
    fixed_tokens: list[int] | None = None,
    max_emit: int | None = None,
    mutation: str | None = None,
    mix: float = 0.6,
) -> dict[tuple[int, ...], float]:
    """Exact distribution of the first k tokens of the stream (one verify round, then the target
    alone), averaged over the draft tokens' own randomness."""
    n = len(parents)
    p_of = lambda prefix: process_row(target.logits(prefix), **proc)  # noqa: E731
    stream: dict[tuple[int, ...], float] = defaultdict(float)

    def extend(seq: tuple[int, ...], pr: float) -> None:
        if len(seq) >= k:
            stream[seq[:k]] += pr
            return
        for v, pv in enumerate(p_of(seq)):
            if pv > 0:
                extend((*seq, v), pr * pv)

    def assignments():
        if fixed_tokens is not None:
            yield list(fixed_tokens), 1.0
            return
        for toks in itertools.product(range(target.vocab), repeat=n):
            pr, toks = 1.0, list(toks)
            for i in range(n):
                q = draft_q(target, node_prefix(parents, toks, parents[i]), mix)
                if mode == "without":
                    sib = [toks[j] for j in range(i) if parents[j] == parents[i]]
                    if toks[i] in sib:
                        pr = 0.0
                        break
                    q = q.copy()
                    q[sib] = 0.0
                    q /= q.sum()
                pr *= q[toks[i]]
            if pr > 0:
                yield toks, pr

    greedy = proc.get("temperature", 1.0) == 0
    for toks, pr in assignments():
        rows = [p_of(())] + [p_of(node_prefix(parents, toks, i)) for i in range(n)]
        q_rows = None
        if mode in ("with", "without"):
            q_rows = [
                draft_q(target, node_prefix(parents, toks, parents[i]), mix) for i in range(n)
            ]
        dist = enumerate_outputs(
            lambda rng, rows=rows, toks=toks, q_rows=q_rows: verify_request_ref(
                rows,
                toks,
                parents,
                rng,
                q_rows=q_rows,
                without_replacement=mode == "without",
                greedy=greedy,
                max_emit=max_emit,
                mutation=mutation,
            )
        )
        for seq, ps in dist.items():
            extend(seq, pr * ps)
    return dict(stream)


def autoregressive(target: TinyLM, k: int, proc: dict) -> dict[tuple[int, ...], float]:
    out: dict[tuple[int, ...], float] = {}
    for seq in itertools.product(range(target.vocab), repeat=k):
        pr = 1.0
        for j in range(k):
            pr *= process_row(target.logits(seq[:j]), **proc)[seq[j]]
        if pr > 0:
            out[seq] = pr
    return out


def max_abs_diff(a: dict, b: dict) -> float:
    return max(abs(a.get(s, 0.0) - b.get(s, 0.0)) for s in set(a) | set(b))


CHAIN3 = [-1, 0, 1]
TREE = [-1, -1, 0, 0]  # two root children, two grandchildren under the first
WIDE = [-1, -1, -1, 1]  # three root children
EXACT_CASES = {
    "chain_with_replacement": (CHAIN3, "with", {}, None),
    "chain_deterministic": (CHAIN3, "det", {}, [0, 2, 1]),
    "chain_greedy": (CHAIN3, "det", {"temperature": 0.0}, [1, 1, 3]),
    "tree_with_replacement": (TREE, "with", {}, None),
    "tree_without_replacement": (WIDE, "without", {}, None),
    "tree_deterministic": (WIDE, "det", {}, [0, 1, 2, 3]),
    "tree_top_k": (TREE, "with", {"top_k": 2}, None),
    "tree_top_p_tempered": (WIDE, "without", {"top_p": 0.7, "temperature": 0.8}, None),
    "chain_min_p": (CHAIN3, "with", {"min_p": 0.2, "temperature": 1.3}, None),
}


@pytest.mark.parametrize("name", list(EXACT_CASES))
@pytest.mark.parametrize("k", [1, 2, 3])
def test_verify_rules_exactly_lossless(name, k):
    parents, mode, proc, fixed = EXACT_CASES[name]
    target = TinyLM(vocab=4, seed=7)
    got = exact_stream(target, parents, k, mode=mode, proc=proc, fixed_tokens=fixed)
    want = autoregressive(target, k, proc)
    assert max_abs_diff(got, want) < 1e-6


def test_verify_rules_lossless_when_p_equals_q():
    target = TinyLM(vocab=4, seed=3)
    # mix=1: q is the target's own distribution at every node, so no draft is ever rejected.
    got = exact_stream(target, TREE, 3, mode="with", proc={}, mix=1.0)
    assert max_abs_diff(got, autoregressive(target, 3, {})) < 1e-6


@pytest.mark.parametrize("cap", [1, 2])
def test_verify_rules_lossless_with_max_emit(cap):
    target = TinyLM(vocab=4, seed=3)
    got = exact_stream(target, CHAIN3, 3, mode="with", proc={}, max_emit=cap)
    assert max_abs_diff(got, autoregressive(target, 3, {})) < 1e-6


def test_verify_batch_zero_residual_mass_falls_back_to_p():
    """Unnormalised probabilities p = q / 2: a rejection leaves max(0, p - q) = 0 everywhere, so
    the token must come from p itself (renormalised), i.e. from q."""
    rng = np.random.default_rng(4)
    V, R = 8, 50_000
    q = rng.dirichlet(np.ones(V) * 2)
    tok = _categorical(rng, np.tile(q, (R, 1)))
    target = torch.tensor(np.tile(q / 2, (2 * R, 1)), dtype=torch.float32)
    res = dspark.verify_batch(
        target,
        torch.tensor(tok),
        torch.arange(0, R + 1, dtype=torch.int32),
        target_is_probs=True,
        draft_probs=torch.tensor(np.tile(q, (R, 1)), dtype=torch.float32),
        temperature=1.0,
        seed=torch.arange(R),
    )
    rejected = (res.accept_len == 0).numpy()
    assert 0.4 < rejected.mean() < 0.6  # accepted with probability p(t)/q(t) = 1/2
    finals = res.final_token.numpy()[rejected]
    assert chi2_pvalue(np.bincount(finals, minlength=V), q) > ALPHA


@pytest.mark.parametrize(
    ("mutation", "parents", "mode", "fixed", "seed"),
    [
        ("residual_is_p", CHAIN3, "with", None, 7),
        ("bonus_from_parent", [-1], "det", [0], 7),
        ("no_q_renormalisation", WIDE, "without", None, 9),  # TV error 0.02 for this toy model
    ],
)
def test_verify_tests_catch_mutations(mutation, parents, mode, fixed, seed):
    """A broken rule fails the exact test and the chi-square test used on the kernel."""
    target = TinyLM(vocab=4, seed=seed)
    bad = exact_stream(
        target, parents, 2, mode=mode, proc={}, fixed_tokens=fixed, mutation=mutation
    )
    want = autoregressive(target, 2, {})
    assert max_abs_diff(bad, want) > 1e-6
    keys = sorted(want)
    rng = np.random.default_rng(0)
    pbad = np.array([bad.get(s, 0.0) for s in keys])
    counts = rng.multinomial(N_ROUNDS, pbad / pbad.sum())
    assert chi2_pvalue(counts, np.array([want[s] for s in keys])) < ALPHA


# ---------------------------------------------------------------------------------------------
# Statistical tests of the kernel itself.


def _categorical(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One draw per row of probs [M, V] (vectorised inverse CDF)."""
    u = rng.random((probs.shape[0], 1))
    return np.minimum((np.cumsum(probs, 1) < u).sum(1), probs.shape[1] - 1)


def _kernel_stream(parents: list[int], mode: str, proc: dict, vocab: int = 8, seed: int = 0):
    """Run N_ROUNDS independent rounds through dspark.verify_batch; return the first two stream
    tokens of each round and the target."""
    target = TinyLM(vocab, seed=11)
    rng = np.random.default_rng(seed)
    n, R = len(parents), N_ROUNDS
    tok = np.zeros((R, n), dtype=np.int64)
    q_rows = np.zeros((R, n, vocab))
    cache: dict = {}

    def table(prefixes: np.ndarray, fn) -> np.ndarray:
        keys = [tuple(p) for p in prefixes]
        for k in set(keys):
            if k not in cache:
                cache[k] = (target.logits(k), draft_q(target, k))
        return np.stack([fn(cache[k]) for k in keys])

    def prefixes_of(i: int) -> np.ndarray:
        chain = []
        while i >= 0:
            chain.append(i)
            i = parents[i]
        return tok[:, list(reversed(chain))] if chain else np.zeros((R, 0), dtype=np.int64)

    for i in range(n):
        q = table(prefixes_of(parents[i]), lambda e: e[1])
        if mode == "without":
            for j in range(i):
                if parents[j] == parents[i]:
                    q[np.arange(R), tok[:, j]] = 0.0
            q /= q.sum(1, keepdims=True)
        q_rows[:, i] = q if mode == "with" else table(prefixes_of(parents[i]), lambda e: e[1])
        tok[:, i] = _categorical(rng, q)
    rows = np.zeros((R, n + 1, vocab))
    rows[:, 0] = target.logits(())
    for i in range(n):
        rows[:, i + 1] = table(prefixes_of(i), lambda e: e[0])
    kw = {"temperature": torch.full((R,), proc.get("temperature", 1.0))}
    for key in ("top_k", "top_p", "min_p"):
        if key in proc:
            kw[key] = proc[key]
    if mode in ("with", "without"):
        kw["draft_probs"] = torch.tensor(q_rows.reshape(R * n, vocab), dtype=torch.float32)
    res = dspark.verify_batch(
        torch.tensor(rows.reshape(R * (n + 1), vocab), dtype=torch.float32),
        torch.tensor(tok.reshape(-1)),
        torch.arange(0, R * n + 1, n, dtype=torch.int32),
        parents=torch.tensor(parents * R, dtype=torch.int32),
        draft_sampling="without_replacement" if mode == "without" else "with_replacement",
        seed=torch.tensor(rng.integers(0, 2**62, size=R)),
        **kw,
    )
    first = res.tokens[:, 0].numpy()
    second = res.tokens[:, 1].numpy().copy()
    short = second < 0  # only one token emitted: the stream continues with the target alone
    p2 = np.stack([process_row(target.logits((int(a),)), **proc) for a in range(vocab)])
    second[short] = _categorical(rng, p2[first[short]])
    return target, first, second


KERNEL_CASES = {
    "chain_with_replacement": ([-1, 0, 1], "with", {}),
    "tree_without_replacement": ([-1, -1, -1, 0, 1], "without", {}),
    "tree_deterministic": ([-1, -1, 0, 1], "det", {}),
    "chain_top_p_tempered": ([-1, 0], "with", {"top_p": 0.8, "temperature": 0.7}),
    "tree_top_k": ([-1, -1, 0], "with", {"top_k": 3}),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(KERNEL_CASES))
def test_verify_batch_output_distribution(name):
    parents, mode, proc = KERNEL_CASES[name]
    target, first, second = _kernel_stream(parents, mode, proc)
    V = target.vocab
    p1 = process_row(target.logits(()), **proc)
    p12 = np.stack([p1[a] * process_row(target.logits((a,)), **proc) for a in range(V)]).ravel()
    # Power to detect a 0.01 TV shift at ALPHA, stated and checked (scipy ncx2).
    assert chi2_power(p1, N_ROUNDS) > 0.99 and chi2_power(p12, N_ROUNDS) > 0.99
    assert chi2_pvalue(np.bincount(first, minlength=V), p1) > ALPHA
    assert chi2_pvalue(np.bincount(first * V + second, minlength=V * V), p12) > ALPHA


@pytest.mark.parametrize("sharp", [0.5, 2.0])
def test_verify_batch_acceptance_rate_is_one_minus_tv(sharp):
    rng = np.random.default_rng(1)
    V, R = 16, 100_000
    p_logits = rng.normal(size=V) * sharp
    q_logits = p_logits + rng.normal(size=V)
    p = np.exp(p_logits) / np.exp(p_logits).sum()
    q = np.exp(q_logits) / np.exp(q_logits).sum()
    tok = _categorical(rng, np.tile(q, (R, 1)))
    target = torch.tensor(np.tile(p_logits, (2 * R, 1)), dtype=torch.float32)
    res = dspark.verify_batch(
        target,
        torch.tensor(tok),
        torch.arange(0, R + 1, dtype=torch.int32),
        draft_probs=torch.tensor(np.tile(q, (R, 1)), dtype=torch.float32),
        temperature=torch.ones(R),
        seed=torch.arange(R),
    )
    rate = res.accept_len.float().mean().item()
    expected = 1 - 0.5 * np.abs(p - q).sum()
    sigma = np.sqrt(expected * (1 - expected) / R)
    assert abs(rate - expected) < 5 * sigma
