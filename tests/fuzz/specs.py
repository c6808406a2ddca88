"""Valid base calls of every public op, converter and scheduler, for the fuzz suite.

Each :class:`Spec` builds a valid call (``base(g, size)``: sizes vary with ``size`` so the
property-based part explores shapes), runs it, and checks that a result is valid. ``args`` lists
the arguments that are mutated, each with the other argument names an error may legitimately
name instead (e.g. a longer ``draft_tokens`` makes ``target`` the wrong shape).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

import dspark

i32, i64 = torch.int32, torch.int64


@dataclass
class Spec:
    base: Callable[[torch.Generator, int], dict[str, Any]]
    call: Callable[[dict[str, Any]], Any]
    check: Callable[[dict[str, Any], Any], None]
    args: dict[str, tuple[str, ...]]
    compare: Callable[[Any, Any], bool] = field(default=lambda a, b: True)
    # Raw `_C` entry points: pybind11's own TypeError (it lists the signature with the argument
    # names) is accepted for values of the wrong Python type (None, str, list, float for int,
    # ints beyond int64); dtypes, shapes and ranges must still get the op's named message.
    raw: bool = False


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def _close(a: Any, b: Any) -> bool:
    return a.shape == b.shape and torch.allclose(a, b, atol=1e-5, rtol=1e-5, equal_nan=True)


# --- verify_batch --------------------------------------------------------------------------------


def _verify_base(g: torch.Generator, size: int) -> dict[str, Any]:
    V, lens = 7 + 5 * size, [2 + size % 3, 1, 3]
    R, N = len(lens), sum(lens)
    indptr = torch.tensor([0, *torch.tensor(lens).cumsum(0).tolist()], dtype=i32)
    parents = torch.cat(
        [torch.tensor([-1] + [i // 2 if i else -1 for i in range(1, n)]) for n in lens]
    )
    return {
        "target": torch.randn(N + R, V, generator=g),
        "draft_tokens": torch.randint(0, V, (N,), generator=g, dtype=i32),
        "draft_indptr": indptr,
        "parents": parents.to(i32),
        "draft_probs": torch.softmax(torch.randn(N, V, generator=g), -1),
        "temperature": torch.tensor([1.0, 0.0, 0.7]),
        "top_k": 5,
        "top_p": torch.full((R,), 0.9),
        "min_p": 0.05,
        "seed": torch.tensor([1, 2, 3], dtype=i64),
        "offset": 4,
        "max_depth": 3,
        "max_emit": torch.tensor([9, 2, 9], dtype=i32),
    }


def _verify_call(kw: dict[str, Any]) -> Any:
    kw = dict(kw)
    return dspark.verify_batch(
        kw.pop("target"), kw.pop("draft_tokens"), kw.pop("draft_indptr"), **kw
    )


def _check_verify_result(res: Any, vocab: int, depth: int) -> None:
    assert res.tokens.shape[1] == depth + 1
    assert bool(((res.tokens >= -1) & (res.tokens < vocab)).all()), res.tokens
    assert bool(((res.accept_len >= 0) & (res.accept_len <= depth)).all()), res.accept_len
    assert bool((res.path >= -1).all()), res.path
    emitted = res.num_emitted
    assert bool(((emitted == res.accept_len + 1) | (emitted == 0)).all())


def _verify_check(kw: dict[str, Any], res: Any) -> None:
    target = kw["target"]
    _check_verify_result(res, target.shape[1], res.path.shape[1])


_VERIFY_ARGS = {
    "target": ("draft_indptr", "draft_probs"),
    "draft_tokens": ("target", "parents", "draft_probs", "draft_indptr"),
    "draft_indptr": ("target", "draft_tokens", "top_p", "temperature", "seed", "max_emit"),
    "parents": (),
    "draft_probs": (),
    "temperature": (),
    "top_k": (),
    "top_p": (),
    "min_p": (),
    "seed": (),
    "offset": (),
    "max_depth": (),
    "max_emit": (),
}

# --- verify_attention ----------------------------------------------------------------------------


def _attn_base(g: torch.Generator, size: int) -> dict[str, Any]:
    P, S, Hk, D = 4, 3 + size % 4, 1, 64
    qo = [2, 3]
    return {
        "q": torch.randn(sum(qo), 2, D, generator=g),
        "k_cache": torch.randn(P, S, Hk, D, generator=g),
        "v_cache": torch.randn(P, S, Hk, D, generator=g),
        "qo_indptr": torch.tensor([0, 2, 5], dtype=i32),
        "block_table": torch.tensor([[1, 0, 2], [3, 2, 1]], dtype=i32),
        "kv_len": torch.tensor([S + 1, 2 * S], dtype=i32),
        "parents": torch.tensor([-1, 0, -1, 0, 0], dtype=i32),
        "sm_scale": 0.125,
        "logits_soft_cap": 30.0,
        "window_left": -1,
    }


def _attn_check(kw: dict[str, Any], out: Any) -> None:
    assert out.shape == kw["q"].shape
    floats = [kw[k] for k in ("q", "k_cache", "v_cache")]
    if all(isinstance(t, torch.Tensor) and bool(torch.isfinite(t).all()) for t in floats):
        assert bool(torch.isfinite(out).all())


_ATTN_ARGS = {
    "q": ("k_cache", "v_cache", "parents", "qo_indptr", "out"),
    "k_cache": ("v_cache", "block_table", "kv_len", "q"),
    "v_cache": ("k_cache",),
    "qo_indptr": ("q", "block_table", "kv_len", "parents"),
    "block_table": ("kv_len",),
    "kv_len": (),
    "parents": (),
    "sm_scale": (),
    "logits_soft_cap": (),
    "window_left": (),
}

# --- draft_step ----------------------------------------------------------------------------------


def _draft_base(g: torch.Generator, size: int) -> dict[str, Any]:
    R, G, V, r, d = 2, 2 + size % 3, 11 + 7 * size, 4, 5
    return {
        "base_logits": torch.randn(R, G, V, generator=g),
        "w1": torch.randn(V, r, generator=g),
        "w2": torch.randn(V, r, generator=g),
        "anchors": torch.tensor([0, V - 1]),
        "temperature": torch.tensor([1.0, 0.0]),
        "seed": torch.tensor([5, 6]),
        "offset": 3,
        "hidden": torch.randn(R, G, d, generator=g),
        "conf_weight": torch.randn(d + r, generator=g),
        "conf_bias": 0.5,
        "candidates": 0,
    }


def _draft_call(kw: dict[str, Any]) -> Any:
    kw = dict(kw)
    return dspark.draft_step(
        kw.pop("base_logits"), kw.pop("w1"), kw.pop("w2"), kw.pop("anchors"), **kw
    )


def _draft_check(kw: dict[str, Any], res: Any) -> None:
    V = kw["base_logits"].shape[2]
    assert bool(((res.tokens >= 0) & (res.tokens < V)).all()), res.tokens


_DRAFT_ARGS = {
    "base_logits": ("w1", "w2", "anchors", "hidden", "temperature", "seed"),
    "w1": ("w2", "conf_weight"),
    "w2": (),
    "anchors": (),
    "temperature": (),
    "seed": (),
    "offset": (),
    "hidden": ("conf_weight",),
    "conf_weight": ("hidden",),
    "conf_bias": (),
    "candidates": (),
}

# --- tree helpers --------------------------------------------------------------------------------


def _valid_parents(parents: torch.Tensor, indptr: list[int]) -> None:
    p = parents.tolist()
    for r in range(len(indptr) - 1):
        for i in range(indptr[r + 1] - indptr[r]):
            assert -1 <= p[indptr[r] + i] < i


def _positions_base(g: torch.Generator, size: int) -> dict[str, Any]:
    n = 2 + size % 4
    return {
        "parents": torch.tensor([-1, 0, 0, -1, -1, *range(n - 1)], dtype=i32),
        "qo_indptr": torch.tensor([0, 4, 4 + n], dtype=i32),
        "kv_len": torch.tensor([10, n + size]),
    }


def _positions_check(kw: dict[str, Any], pos: Any) -> None:
    assert pos.shape == (int(kw["qo_indptr"][-1]),)
    assert bool((pos >= 0).all())


def _layout_base(g: torch.Generator, size: int) -> dict[str, Any]:
    return {
        "parents": torch.tensor([-1, -1, 0] + [-1] * (1 + size % 3), dtype=i32),
        "draft_indptr": torch.tensor([0, 3, 4 + size % 3], dtype=i32),
    }


def _layout_check(kw: dict[str, Any], out: Any) -> None:
    qp, ip = out
    assert qp.dtype == i32 and ip.dtype == i32
    assert int(ip[0]) == 0 and bool((ip[1:] >= ip[:-1]).all())
    _valid_parents(qp, ip.tolist())


def _mask_base(g: torch.Generator, size: int) -> dict[str, Any]:
    return {**_layout_base(g, size), "layout": "dense"}


def _mask_check(kw: dict[str, Any], out: Any) -> None:
    assert out.dtype == torch.bool and out.dim() == 2


def _choices_base(g: torch.Generator, size: int) -> dict[str, Any]:
    return {"choices": [[0], [1], [0, 0], [0, 1], [0, 0, 0]][: 2 + size % 4]}


def _choices_check(kw: dict[str, Any], out: Any) -> None:
    parents, order = out
    assert len(order) == parents.shape[0]
    _valid_parents(parents, [0, parents.shape[0]])


def _sglang_base(g: torch.Generator, size: int) -> dict[str, Any]:
    return {
        "retrive_next_token": torch.tensor([[1, 3, 4, -1, -1]] * (1 + size % 2)),
        "retrive_next_sibling": torch.tensor([[-1, 2, -1, -1, -1]] * (1 + size % 2)),
    }


def _sglang_check(kw: dict[str, Any], out: Any) -> None:
    _valid_parents(out.parents, out.draft_indptr.tolist())


# --- schedulers ----------------------------------------------------------------------------------


def _sched_base(g: torch.Generator, size: int) -> dict[str, Any]:
    R, G = 3, 2 + size % 4
    return {
        "confidences": torch.rand(R, G, generator=g),
        "max_lengths": torch.tensor([G, 1, 0]),
        "remaining_tokens": 5,
        "token_budget": 64,
    }


def _sched_call(kw: dict[str, Any]) -> Any:
    sched = dspark.PrefixScheduler(dspark.SpsTable([1, 8, 64], [10.0, 9.0, 4.0]))
    kw = dict(kw)
    return sched.schedule(kw.pop("confidences"), **kw)


def _sched_check(kw: dict[str, Any], out: Any) -> None:
    c = kw["confidences"]
    assert out.shape == (c.shape[0],)
    assert bool(((out >= 0) & (out <= c.shape[1])).all())


def _async_call(kw: dict[str, Any]) -> Any:
    sched = dspark.scheduler.AsyncPrefixScheduler(
        dspark.SpsTable([1, 8, 64], [10.0, 9.0, 4.0]), delay=1
    )
    sched.step(
        kw["confidences"].clone()
        if isinstance(kw["confidences"], torch.Tensor)
        else kw["confidences"]
    )
    return sched.step(kw["confidences"], max_lengths=kw["max_lengths"])


_SCHED_ARGS = {
    "confidences": ("max_lengths",),
    "max_lengths": (),
    "remaining_tokens": (),
    "token_budget": (),
}

SPECS: dict[str, Spec] = {
    "verify_batch": Spec(_verify_base, _verify_call, _verify_check, _VERIFY_ARGS, _equal),
    "verify_attention": Spec(
        _attn_base, lambda kw: dspark.verify_attention(**kw), _attn_check, _ATTN_ARGS, _close
    ),
    "draft_step": Spec(_draft_base, _draft_call, _draft_check, _DRAFT_ARGS, _equal),
    "tree_positions": Spec(
        _positions_base,
        lambda kw: dspark.tree_positions(**kw),
        _positions_check,
        {"parents": (), "qo_indptr": ("kv_len", "parents"), "kv_len": ()},
        _equal,
    ),
    "tree_query_layout": Spec(
        _layout_base,
        lambda kw: dspark.tree_query_layout(**kw),
        _layout_check,
        {"parents": (), "draft_indptr": ("parents",)},
        _equal,
    ),
    "tree_attention_mask": Spec(
        _mask_base,
        lambda kw: dspark.tree_attention_mask(**kw),
        _mask_check,
        {"parents": (), "draft_indptr": ("parents", "tree_attention_mask"), "layout": ()},
        _equal,
    ),
    "tree_from_choices": Spec(
        _choices_base,
        lambda kw: dspark.tree_from_choices(**kw),
        _choices_check,
        {"choices": ()},
        _equal,
    ),
    "tree_from_sglang": Spec(
        _sglang_base,
        lambda kw: dspark.tree_from_sglang(**kw),
        _sglang_check,
        {
            "retrive_next_token": ("retrive_next_sibling",),
            "retrive_next_sibling": ("retrive_next_token",),
        },
        _equal,
    ),
    "PrefixScheduler.schedule": Spec(_sched_base, _sched_call, _sched_check, _SCHED_ARGS, _equal),
    "AsyncPrefixScheduler.step": Spec(
        _sched_base,
        _async_call,
        _sched_check,
        {"confidences": ("max_lengths",), "max_lengths": ()},
        _equal,
    ),
}
