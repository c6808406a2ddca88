"""verify_batch rejects bad input with a clear exception naming the argument (never a crash)."""

from __future__ import annotations

import pytest
import torch

import dspark


def good() -> dict:
    V = 12
    return {
        "target": torch.randn(5 + 2, V),
        "draft_tokens": torch.tensor([1, 2, 3, 4, 5]),
        "draft_indptr": torch.tensor([0, 2, 5], dtype=torch.int32),
        "parents": torch.tensor([-1, 0, -1, 0, 0], dtype=torch.int32),
        "draft_probs": torch.softmax(torch.randn(5, V), -1),
        "temperature": torch.tensor([1.0, 0.5]),
        "seed": torch.tensor([1, 2]),
    }


def call(**kw):
    a = good()
    a.update(kw)
    return dspark.verify_batch(a.pop("target"), a.pop("draft_tokens"), a.pop("draft_indptr"), **a)


BAD = [
    ({"target": torch.randn(7, 12, 1)}, ValueError, "target: expected shape"),
    ({"target": torch.randn(6, 12)}, ValueError, r"target: expected shape \(N \+ R, V\) = \(7"),
    ({"target": torch.randint(0, 3, (7, 12))}, TypeError, "target: expected dtype"),
    ({"target": [[0.0]]}, TypeError, "target: expected a torch.Tensor"),
    ({"draft_tokens": torch.tensor([1.0, 2, 3, 4, 5])}, TypeError, "draft_tokens: expected dtype"),
    ({"draft_tokens": torch.tensor([1, 2, -1, 4, 5])}, ValueError, r"draft_tokens.*-1 padding"),
    (
        {"draft_tokens": torch.tensor([1, 2, 3, 4, 12])},
        ValueError,
        r"draft_tokens: expected ids in \[0, 12\)",
    ),
    (
        {"draft_indptr": torch.tensor([0], dtype=torch.int32), "target": torch.randn(5, 12)},
        ValueError,
        "draft_indptr: empty batch",
    ),
    (
        {"draft_indptr": torch.tensor([1, 2, 5], dtype=torch.int32)},
        ValueError,
        r"draft_indptr\[0\] == 0",
    ),
    ({"draft_indptr": torch.tensor([0, 3, 2], dtype=torch.int32)}, ValueError, "draft_indptr"),
    (
        {"parents": torch.tensor([-1, 1, -1, 0, 0], dtype=torch.int32)},
        ValueError,
        r"parents: expected -1 <= parents\[i\] < i",
    ),
    ({"parents": torch.tensor([-1, 0, -2, 0, 0], dtype=torch.int32)}, ValueError, "parents"),
    (
        {"parents": torch.tensor([-1, 0, -1], dtype=torch.int32)},
        ValueError,
        r"parents: expected shape \(5,\)",
    ),
    ({"draft_probs": torch.randn(5, 11)}, ValueError, r"draft_probs: expected shape \(5, 12\)"),
    ({"draft_logits": torch.randn(5, 12)}, ValueError, "pass at most one"),
    ({"draft_sampling": "maybe"}, ValueError, "draft_sampling"),
    (
        {"temperature": torch.tensor([1.0, -0.5])},
        ValueError,
        r"temperature: expected finite values >= 0, got temperature\[1\]",
    ),
    ({"temperature": torch.tensor([1.0, float("nan")])}, ValueError, "temperature"),
    ({"temperature": torch.tensor([1.0])}, ValueError, r"temperature: expected shape \(2,\)"),
    ({"top_p": torch.tensor([0.0, 0.5])}, ValueError, r"top_p: expected values in \(0, 1\]"),
    ({"top_p": 1.5}, ValueError, "top_p"),
    ({"top_k": torch.tensor([-1, 3])}, ValueError, "top_k: expected values >= 0"),
    ({"top_k": torch.tensor([1.5, 3.0])}, TypeError, "top_k: expected a integer tensor"),
    ({"min_p": 1.5}, ValueError, "min_p"),
    ({"max_emit": -1}, ValueError, "max_emit"),
    ({"seed": torch.tensor([1.0, 2.0])}, TypeError, "seed"),
    ({"max_depth": -1}, ValueError, "max_depth"),
    ({"validate": "sometimes"}, ValueError, "validate"),
    (
        {"target": torch.full((7, 12), float("nan")), "validate": "full"},
        ValueError,
        "target: row 0 is invalid",
    ),
    (
        {"draft_probs": torch.rand(5, 12), "validate": "full"},
        ValueError,
        "draft_probs: row 0 is invalid",
    ),
]


@pytest.mark.parametrize(("kw", "exc", "match"), BAD, ids=[m for _, _, m in BAD])
def test_verify_batch_rejects_bad_input(kw, exc, match):
    with pytest.raises(exc, match=match):
        call(**kw)


def test_verify_batch_too_many_children():
    V, n = 8, 70
    with pytest.raises(ValueError, match="more than 64 children"):
        dspark.verify_batch(
            torch.randn(n + 1, V),
            torch.zeros(n, dtype=torch.int64),
            torch.tensor([0, n], dtype=torch.int32),
            parents=torch.full((n,), -1, dtype=torch.int32),
            temperature=1.0,
        )


def low_level_call(outputs) -> None:
    """The native entry, called directly (as a binding author would), with ``good()`` inputs."""
    from dspark import _C

    a = good()
    _C.verify_batch(
        a["target"],
        a["draft_tokens"],
        a["draft_indptr"].int(),
        a["parents"],
        a["draft_probs"],
        1,
        0,
        a["temperature"],
        None,
        None,
        None,
        a["seed"],
        torch.zeros(2, dtype=torch.int64),
        None,
        False,
        2,
        *outputs,
        None,
    )


def test_verify_batch_low_level_rejects_mismatched_outputs():
    # The native entry re-checks everything, so a direct call cannot crash either.
    out = dspark.VerifyResult.empty(2, 1, torch.device("cpu"))  # too narrow: depth is 2
    with pytest.raises(ValueError, match=r"out.tokens: expected shape \(2, 3\)"):
        low_level_call(out[:8])


def test_verify_batch_low_level_rejects_strided_outputs():
    out = dspark.VerifyResult.empty(2, 2, torch.device("cpu"))
    strided = torch.empty(2, 2, dtype=torch.int32)[:, 0]  # stride 2
    with pytest.raises(ValueError, match="contiguous"):
        low_level_call((strided, *out[1:8]))


def test_cuda_tensor_on_cpu_only_build_is_clear(monkeypatch):
    from dspark import _backend

    monkeypatch.setattr(_backend._C, "built_with_cuda", False)
    with pytest.raises(
        ValueError, match="target: got a CUDA tensor, but dspark was built without CUDA"
    ):
        _backend.require_cuda("target")


def test_verify_batch_unvalidated_garbage_does_not_crash():
    # validate="none" trusts the caller, yet out-of-range ids are still caught before any read.
    with pytest.raises(ValueError, match="draft_tokens"):
        call(draft_tokens=torch.tensor([1, 2, 3, 4, 10**6]), validate="none", max_depth=3)
