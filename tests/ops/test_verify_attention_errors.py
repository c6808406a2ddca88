"""Bad input to verify_attention raises a clear error naming the argument (Python and C++)."""

from __future__ import annotations

import pytest
import torch

import dspark
from dspark import _C
from tests.ops.verify_attention_cases import AttnCase, make_inputs


def base() -> dict:
    return make_inputs(AttnCase((3, 4), (10, 20)), seed=1)  # page_size 16, 2 KV heads, D 64


def i32(*v):
    return torch.tensor(v, dtype=torch.int32)


def set_entry(name, index, value):
    def f(inp):
        t = inp[name].clone()
        t[index] = value
        inp[name] = t

    return f


MUTATIONS = [
    # (what, mutate(inp), exception, message regex)
    ("mismatched heads", lambda i: i.update(q=torch.randn(7, 7, 64)), ValueError, "H = 7 .*Hk = 2"),
    (
        "head dim",
        lambda i: i.update(
            q=torch.randn(7, 8, 96),
            k_cache=torch.randn(4, 16, 2, 96),
            v_cache=torch.randn(4, 16, 2, 96),
        ),
        ValueError,
        "head dim",
    ),
    ("k/q head dim", lambda i: i.update(k_cache=torch.randn(4, 16, 2, 128)), ValueError, "k_cache"),
    ("v shape", lambda i: i.update(v_cache=torch.randn(4, 8, 2, 64)), ValueError, "v_cache"),
    (
        "k dtype",
        lambda i: i.update(k_cache=i["k_cache"].half()),
        TypeError,
        "k_cache: expected dtype float32",
    ),
    (
        "q int",
        lambda i: i.update(q=torch.zeros(7, 8, 64, dtype=torch.int32)),
        TypeError,
        "q: expected dtype",
    ),
    (
        "page out of range",
        set_entry("block_table", (1, 0), 99),
        ValueError,
        r"block_table\[1, 0\] = 99",
    ),
    (
        "negative page",
        set_entry("block_table", (0, 0), -1),
        ValueError,
        "block_table: page id out of range",
    ),
    (
        "kv_len beyond table",
        set_entry("kv_len", 1, 1000),
        ValueError,
        "kv_len.*beyond the block table",
    ),
    ("kv_len below qo_len", set_entry("kv_len", 0, 2), ValueError, "kv_len.*smaller than"),
    ("parents >= i", set_entry("parents", 4, 1), ValueError, r"parents\[4\] = 1"),
    ("parents < -1", set_entry("parents", 0, -2), ValueError, "parents"),
    (
        "parents length",
        lambda i: i.update(parents=i32(-1, 0)),
        ValueError,
        "parents: expected shape",
    ),
    (
        "parents dtype",
        lambda i: i.update(parents=i["parents"].long()),
        TypeError,
        "parents: expected dtype int32",
    ),
    ("indptr end", lambda i: i.update(qo_indptr=i32(0, 3, 6)), ValueError, "qo_indptr"),
    ("indptr order", lambda i: i.update(qo_indptr=i32(0, 5, 3)), ValueError, "qo_indptr"),
    (
        "block_table rows",
        lambda i: i.update(block_table=i["block_table"][:1]),
        ValueError,
        "block_table: expected shape",
    ),
    (
        "kv_len dtype",
        lambda i: i.update(kv_len=i["kv_len"].long()),
        TypeError,
        "kv_len: expected dtype int32",
    ),
    ("window", lambda i: i.update(window_left=-3), ValueError, "window_left"),
    ("soft cap", lambda i: i.update(logits_soft_cap=-1.0), ValueError, "logits_soft_cap"),
    ("not a tensor", lambda i: i.update(q=[1, 2]), TypeError, "q: expected a torch.Tensor"),
]


@pytest.mark.parametrize(
    ("what", "mutate", "exc", "match"), MUTATIONS, ids=[m[0] for m in MUTATIONS]
)
def test_verify_attention_rejects_bad_input(what, mutate, exc, match):
    inp = base()
    mutate(inp)
    with pytest.raises(exc, match=match):
        dspark.verify_attention(**inp)


def raw_call(inp, **over):
    """Call _C directly, bypassing the Python checks: the C++ layer must still refuse."""
    a = {**inp, **over}
    q = a["q"]
    out = torch.empty_like(q)
    _C.verify_attention(
        q,
        a["k_cache"],
        a["v_cache"],
        a["qo_indptr"],
        a["block_table"],
        a["kv_len"],
        a["parents"],
        0.125,
        0.0,
        -1,
        -1,
        -1,
        out,
        None,
    )


@pytest.mark.parametrize(
    ("over", "match"),
    [
        (
            {"block_table": torch.full((2, 3), 50, dtype=torch.int32)},
            "block_table: page id out of range",
        ),
        ({"kv_len": i32(3, 1000)}, "beyond the block table"),
        ({"parents": i32(-1, 0, 2, -1, 0, 1, 2)}, r"parents\[2\] = 2"),
        ({"q": torch.randn(7, 5, 64)}, "multiple of the KV heads"),
        ({"qo_indptr": i32(0, 4, 3)}, "qo_indptr"),
    ],
)
def test_verify_attention_cpp_checks(over, match):
    with pytest.raises(ValueError, match=match):
        raw_call(base(), **over)
