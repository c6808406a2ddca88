"""Tree converters and attention masks."""

from __future__ import annotations

import pytest
import torch

import dspark


def test_tree_from_choices_orders_by_depth_then_rank():
    parents, order = dspark.tree_from_choices([(1, 0), (0,), (0, 1), (1,), (0, 0), (0, 0, 0)])
    assert order == [(0,), (1,), (0, 0), (0, 1), (1, 0), (0, 0, 0)]
    assert parents.tolist() == [-1, -1, 0, 0, 1, 2]
    assert parents.dtype == torch.int32


@pytest.mark.parametrize(
    ("choices", "match"),
    [([(0, 1)], "no parent entry"), ([()], "empty path"), ([(0,), (0, -1)], "ranks must be >= 0")],
)
def test_tree_from_choices_rejects_bad_choices(choices, match):
    with pytest.raises(ValueError, match=match):
        dspark.tree_from_choices(choices)


def test_tree_from_sglang_preorder():
    # SGLang: root 0 has children 1, 2 (siblings); 1 has child 3; 2 has child 4; 3 has child 5.
    nxt = torch.tensor([[1, 3, 4, 5, -1, -1]])
    sib = torch.tensor([[-1, 2, -1, -1, -1, -1]])
    tree = dspark.tree_from_sglang(nxt, sib)
    # Pre-order: 1, 3, 5, 2, 4 -> local 0..4
    assert tree.order.tolist() == [[1, 3, 5, 2, 4]]
    assert tree.parents.tolist() == [-1, 0, 1, -1, 3]
    assert tree.draft_indptr.tolist() == [0, 5]


def test_tree_from_sglang_rejects_unreachable_nodes():
    nxt = torch.tensor([[1, -1, -1]])
    sib = torch.tensor([[-1, -1, -1]])
    with pytest.raises(ValueError, match="reaches 1 of 2 nodes"):
        dspark.tree_from_sglang(nxt, sib)


def test_tree_attention_mask_matches_ancestors():
    parents = torch.tensor([-1, -1, 0, 2, -1, 0], dtype=torch.int32)
    indptr = torch.tensor([0, 4, 4, 6], dtype=torch.int32)
    dense = dspark.tree_attention_mask(parents, indptr, layout="dense")
    assert dense.shape == (6 + 3, 5)
    # request 0: queries [anchor, n0, n1, n2, n3]; n3's ancestors are n2 -> n0 -> anchor
    assert dense[4].tolist() == [True, True, False, True, True]
    assert dense[2].tolist() == [True, False, True, False, False]
    assert dense[5].tolist() == [True, False, False, False, False]  # request 1: anchor only
    assert dense[8].tolist() == [True, True, True, False, False]  # request 2: n1 under n0
    packed = dspark.tree_attention_mask(parents, indptr)
    assert packed.dtype == torch.int32 and packed.shape == (9, 1)
    assert int(packed[4, 0]) == 0b11011
    chain = dspark.tree_attention_mask(
        None, torch.tensor([0, 3], dtype=torch.int32), layout="dense"
    )
    assert torch.equal(chain, torch.tril(torch.ones(4, 4, dtype=torch.bool)))


def test_tree_attention_mask_bitpacks_beyond_32_queries():
    n = 40
    packed = dspark.tree_attention_mask(None, torch.tensor([0, n], dtype=torch.int32))
    assert packed.shape == (n + 1, 2)
    assert int(packed[n, 0]) == -1 and int(packed[n, 1]) == (1 << (n + 1 - 32)) - 1
