"""verify_batch: token-for-token equality with the loop reference (same Philox numbers), structure
and edge cases, batch invariance, reproducibility and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import dspark
from tests.ops.verify_cases import Case, make_batch, reference_outputs
from tests.reference.philox import philox4x32_10
from tests.reference.verify import process_row


def run(batch: dict, **kw) -> dspark.VerifyResult:
    args = {k: v for k, v in batch.items() if k not in ("target", "draft_tokens", "draft_indptr")}
    return dspark.verify_batch(
        batch["target"], batch["draft_tokens"], batch["draft_indptr"], **args, **kw
    )


def assert_matches_reference(case: Case, res: dspark.VerifyResult, batch: dict) -> None:
    refs = reference_outputs(case, batch)
    indptr = batch["draft_indptr"].tolist()
    for r, ref in enumerate(refs):
        n = len(ref.tokens)
        ctx = f"request {r}: dspark {res.tokens[r].tolist()} vs reference {ref.tokens}"
        assert res.tokens[r, :n].tolist() == ref.tokens, ctx
        assert (res.tokens[r, n:] == -1).all(), ctx
        assert int(res.num_emitted[r]) == n, ctx
        assert int(res.accept_len[r]) == max(n - 1, 0), ctx
        assert res.path[r, : len(ref.path)].tolist() == ref.path, ctx
        assert bool(res.final_is_bonus[r]) == ref.final_is_bonus, ctx
        expected_row = -1 if n == 0 else indptr[r] + r + ref.last_row
        assert int(res.last_row[r]) == expected_row, ctx
    assert torch.equal(res.next_offset, batch["offset"] + 1)


def test_philox_reference_known_answers():
    # Random123 known-answer vectors for philox4x32-10.
    assert philox4x32_10((0, 0, 0, 0), (0, 0)) == (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)
    assert philox4x32_10((2**32 - 1,) * 4, (2**32 - 1,) * 2) == (
        0x408F276D,
        0x41C83B0E,
        0xA20BC7C6,
        0x6D5451FD,
    )
    assert philox4x32_10(
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0)
    ) == (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)


CASES = {
    "chain_probs": Case([5, 0, 3, 7, 1], temperature=[1.0, 0.8, 1.3, 1.0, 0.5]),
    "chain_logits_q": Case([4, 6, 2], q_kind="logits", temperature=[1.0, 0.7, 1.0]),
    "chain_deterministic": Case([6, 3, 5], q_kind="none", temperature=[1.0, 1.0, 0.6]),
    "chain_greedy": Case([5, 4, 0, 8], q_kind="none", sharpness=0.5),
    "mixed_greedy_sampled": Case([5, 4, 6, 3], temperature=[0.0, 1.0, 0.0, 0.9]),
    "tree_with_replacement": Case([8, 12, 5], tree=True, temperature=[1.0, 1.0, 0.8]),
    "tree_without_replacement": Case(
        [10, 7, 16], tree=True, without_replacement=True, temperature=[1.0, 0.9, 1.0]
    ),
    "tree_deterministic": Case([9, 14], tree=True, q_kind="none", temperature=[1.0, 1.0]),
    "tree_greedy": Case([9, 14, 3], tree=True, q_kind="none", sharpness=0.5),
    "top_k": Case([5, 5, 5], temperature=[1.0, 0.7, 1.2], top_k=7),
    "top_p": Case([5, 5, 5], temperature=[1.0, 0.7, 1.2], top_p=0.8),
    "min_p": Case([5, 5, 5], temperature=[1.0, 0.7, 1.2], min_p=0.05),
    "min_p_one": Case([5, 5, 5], temperature=[1.0, 0.7, 1.2], min_p=1.0),
    "top_k_top_p_tree": Case([10, 6], tree=True, temperature=[1.0, 0.8], top_k=10, top_p=0.9),
    "probs_in": Case([5, 3, 6], is_probs=True, temperature=[1.0, 1.0, 1.0]),
    "probs_in_tempered": Case([5, 3, 6], is_probs=True, temperature=[0.7, 1.5, 1.0], top_p=0.9),
    "max_emit": Case(
        [6, 6, 6, 6], temperature=[1.0, 1.0, 0.0, 1.0], max_emit=[0, 1, 2, 3], sharpness=0.3
    ),
    "large_vocab": Case([3, 5], vocab=5000, temperature=[1.0, 0.9]),
    "odd_vocab_tree": Case([20], vocab=1037, tree=True, temperature=[1.0]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_verify_batch_matches_reference(name):
    case = CASES[name]
    batch = make_batch(case)
    res = run(batch, return_logprobs=True)
    assert_matches_reference(case, res, batch)


@pytest.mark.parametrize("tree", [False, True])
def test_verify_batch_min_p_one_keeps_argmax_ties(tree):
    # min_p = 1.0 is legal (the contract sets no upper bound): it keeps the argmax and its ties.
    case = Case([6, 4, 7], tree=tree, temperature=[1.0, 0.5, 2.0], min_p=1.0)
    batch = make_batch(case)
    batch["target"] = (batch["target"] * 0.5).round()  # integer logits: many tied maxima
    res = run(batch)
    assert_matches_reference(case, res, batch)
    for r in range(3):  # every emitted token is one of its row's tied maxima
        last = batch["target"][int(res.last_row[r])]
        assert last[int(res.final_token[r])] == last.max(), r


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("q_kind", ["probs", "logits"])
def test_verify_batch_low_precision_matches_reference(dtype, q_kind):
    case = Case(
        [4, 7, 2, 5], tree=True, q_kind=q_kind, dtype=dtype, temperature=[1.0, 0.8, 1.0, 0.0]
    )
    batch = make_batch(case)
    assert_matches_reference(case, run(batch), batch)


def test_verify_batch_logprobs():
    case = Case([5, 3], temperature=[0.8, 0.0], top_k=20)
    batch = make_batch(case)
    res = run(batch, return_logprobs=True)
    target = batch["target"].double().numpy()
    indptr = batch["draft_indptr"].tolist()
    for r in range(2):
        n = int(res.num_emitted[r])
        for j in range(n):
            x = target[indptr[r] + r + (0 if j == 0 else int(res.path[r, j - 1]) + 1)]
            tok = int(res.tokens[r, j])
            if case.temperature[r] == 0:
                expected = x[tok] - x.max() - np.log(np.exp(x - x.max()).sum())
            else:
                expected = np.log(process_row(x, temperature=case.temperature[r], top_k=20)[tok])
            assert float(res.logprobs[r, j]) == pytest.approx(expected, abs=2e-4)
        assert (res.logprobs[r, n:] == 0).all()


def test_verify_batch_greedy_equals_argmax_chain():
    g = torch.Generator().manual_seed(1)
    V, lens = 1000, [4, 0, 7, 3]
    indptr = torch.tensor(np.concatenate([[0], np.cumsum(lens)]), dtype=torch.int32)
    target = torch.randn(sum(lens) + 4, V, generator=g)
    argmax = target.argmax(-1)
    # Drafts agree with the greedy target for a random prefix, then diverge.
    drafts = []
    for r, n in enumerate(lens):
        row0 = int(indptr[r]) + r
        agree = int(torch.randint(0, n + 1, (1,), generator=g)) if n else 0
        for i in range(n):
            t = int(argmax[row0 + i])
            drafts.append(t if i < agree else (t + 1) % V)
    res = dspark.verify_batch(target, torch.tensor(drafts), indptr)
    for r, n in enumerate(lens):
        row0 = int(indptr[r]) + r
        k = 0
        while k < n and drafts[int(indptr[r]) + k] == int(argmax[row0 + k]):
            k += 1
        assert int(res.accept_len[r]) == k
        assert res.tokens[r, : k + 1].tolist() == [int(argmax[row0 + i]) for i in range(k + 1)]
        assert bool(res.final_is_bonus[r]) == (k == n)


def test_verify_batch_greedy_ties_pick_lowest_index():
    target = torch.zeros(2, 16)
    target[:, [3, 9]] = 5.0
    res = dspark.verify_batch(target, torch.tensor([9]), torch.tensor([0, 1], dtype=torch.int32))
    assert int(res.accept_len[0]) == 0 and int(res.final_token[0]) == 3


def test_verify_batch_is_batch_invariant():
    case = Case([5, 2, 7, 0, 4, 6], tree=True, temperature=[1.0, 0.0, 0.8, 1.0, 1.2, 1.0])
    batch = make_batch(case)
    full = run(batch)
    # Each request alone gives the same outputs as in the batch (draws depend only on its seed).
    indptr = batch["draft_indptr"]
    for r in range(6):
        n0, n1 = int(indptr[r]), int(indptr[r + 1])
        single = dspark.verify_batch(
            batch["target"][n0 + r : n1 + r + 1],
            batch["draft_tokens"][n0:n1],
            torch.tensor([0, n1 - n0], dtype=torch.int32),
            parents=batch["parents"][n0:n1],
            draft_probs=batch["draft_probs"][n0:n1],
            temperature=batch["temperature"][r : r + 1],
            seed=batch["seed"][r : r + 1],
            offset=batch["offset"][r : r + 1],
            max_depth=full.tokens.shape[1] - 1,
        )
        assert torch.equal(single.tokens[0], full.tokens[r])
        assert torch.equal(single.path[0], full.path[r])


def test_verify_batch_reproducible_and_seed_sensitive():
    case = Case([6] * 32, temperature=[1.0] * 32, sharpness=1.0)
    batch = make_batch(case)
    a, b = run(batch), run(batch)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=False) if x is not None)
    batch["offset"] = batch["offset"] + 1
    c = run(batch)
    assert not torch.equal(a.tokens, c.tokens)


def test_verify_batch_default_seeds_follow_torch_generator():
    case = Case([4] * 16, temperature=[1.0] * 16, sharpness=1.0)
    batch = make_batch(case)
    batch.pop("seed")
    torch.manual_seed(123)
    a = run(batch)
    torch.manual_seed(123)
    b = run(batch)
    assert torch.equal(a.tokens, b.tokens)


def test_verify_batch_structure_edge_cases():
    V = 10
    target = torch.full((3 + 1 + 1, V), -10.0)
    target[:, 2] = 10.0  # the target always wants token 2
    indptr = torch.tensor([0, 3, 3], dtype=torch.int32)  # request 1 has no drafts
    res = dspark.verify_batch(
        target,
        torch.tensor([2, 2, 2]),
        indptr,
        temperature=torch.ones(2),
        seed=torch.tensor([1, 2]),
    )
    assert res.accept_len.tolist() == [3, 0]  # all accepted; depth-0 request
    assert res.final_is_bonus.tolist() == [True, True]
    assert res.tokens.tolist() == [[2, 2, 2, 2], [2, -1, -1, -1]]
    assert res.last_row.tolist() == [3, 4]
    rej = dspark.verify_batch(
        target,
        torch.tensor([5, 2, 2]),
        indptr,
        temperature=torch.ones(2),
        seed=torch.tensor([1, 2]),
    )
    assert rej.accept_len.tolist() == [0, 0] and rej.final_token.tolist() == [2, 2]
    assert rej.final_is_bonus.tolist() == [False, True]
    assert rej.tokens_flat.tolist() == [2, 2]
    assert rej.emitted_indptr.tolist() == [0, 1, 2]


def test_verify_batch_all_requests_without_drafts():
    target = torch.randn(5, 30)
    res = dspark.verify_batch(
        target, torch.zeros(0, dtype=torch.int64), torch.zeros(6, dtype=torch.int32)
    )
    assert res.tokens.shape == (5, 1) and res.path.shape == (5, 0)
    assert torch.equal(res.final_token, target.argmax(-1).int())
    assert res.final_is_bonus.all()


def test_verify_batch_max_emit_caps_and_keeps_bonus():
    target = torch.full((4 + 1, 6), -10.0)
    target[:, 1] = 10.0
    for cap, expected in [(0, []), (1, [1]), (2, [1, 1]), (9, [1, 1, 1, 1, 1])]:
        res = dspark.verify_batch(
            target,
            torch.tensor([1, 1, 1, 1]),
            torch.tensor([0, 4], dtype=torch.int32),
            temperature=torch.ones(1),
            max_emit=cap,
        )
        n = int(res.num_emitted[0])
        assert res.tokens[0, :n].tolist() == expected
        assert int(res.accept_len[0]) == max(len(expected) - 1, 0)


def test_verify_batch_accepts_numpy_free_int32_and_out():
    case = Case([3, 4], temperature=[1.0, 1.0])
    batch = make_batch(case)
    batch["draft_tokens"] = batch["draft_tokens"].int()
    out = dspark.VerifyResult.empty(2, 4, torch.device("cpu"))
    res = run(batch, out=out, max_depth=4)
    assert res.tokens.data_ptr() == out.tokens.data_ptr()
    assert_matches_reference(case, res, batch)


def test_verify_batch_strided_target_rows():
    case = Case([4, 3], vocab=64, temperature=[1.0, 0.9])
    batch = make_batch(case)
    wide = torch.randn(batch["target"].shape[0], 100)
    wide[:, :64] = batch["target"]
    batch["target"] = wide[:, :64]  # row stride 100
    assert_matches_reference(case, run(batch), batch)


@pytest.mark.cuda
def test_verify_batch_cuda_matches_cpu():
    for name in [
        "chain_probs",
        "tree_without_replacement",
        "top_k_top_p_tree",
        "probs_in_tempered",
    ]:
        batch = make_batch(CASES[name])
        cpu = run(batch, return_logprobs=True)
        dev = {k: (v.cuda() if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
        gpu = run(dev, return_logprobs=True)
        for a, b in zip(cpu, gpu, strict=False):
            if a is not None and a.dtype != torch.float32:
                assert torch.equal(a, b.cpu()), name
