"""Eagle3 tree drafting: drafter tree attention, greedy equality, statistics and bad input."""

from __future__ import annotations

import pytest
import torch

import dspark
from dspark.generation import StaticTree
from dspark.models import build_drafter, target_features
from tests._tiny import greedy_reference, tiny_qwen3

TREE = [(0,), (1,), (2,), (0, 0), (0, 1), (1, 0), (0, 0, 0), (0, 0, 1)]


@pytest.fixture(scope="module")
def v16_target():
    return tiny_qwen3(vocab=16, layers=2, logit_scale=40.0, seed=3)


def test_static_tree_structure():
    tree = StaticTree.from_choices(TREE)
    assert tree.parents.tolist() == [-1, -1, -1, 0, 0, 1, 3, 3]
    assert tree.depth.tolist() == [0, 1, 1, 1, 2, 2, 2, 3, 3]
    assert tree.ancestors[7].nonzero().flatten().tolist() == [0, 1, 4, 7]  # anchor, (0,), (0,0)
    with pytest.raises(ValueError, match="choices"):
        StaticTree.from_choices([(0, 0)])


def test_eagle3_tree_rank0_path_equals_greedy_chain(v16_target):
    """Tree attention in the drafter: the all-rank-0 path is the greedy chain proposal, and a
    rank-1 child sees its own parent (not its siblings)."""
    d = build_drafter("eagle3", v16_target, block_size=3)
    ids = torch.randint(0, 16, (2, 8))
    with torch.no_grad():
        hs = v16_target(ids, output_hidden_states=True).hidden_states
    feats = target_features(hs, d.config.feature_layers)
    nxt = torch.cat([ids[:, 1:], torch.tensor([[5], [6]])], 1)
    tree = StaticTree.from_choices(TREE)
    st = d.new_state(2)
    d.commit(st, feats, nxt, torch.tensor([8, 6]))
    nodes = d.propose_tree(st, nxt[:, -1], tree)
    assert st.cache.lengths.tolist() == [8, 6]
    chain = d.propose(st, nxt[:, -1], temperature=torch.zeros(2))
    assert nodes[:, [0, 3, 6]].tolist() == chain.tokens.tolist()
    order = torch.sort(chain.draft_logits[:, 0], dim=-1, descending=True, stable=True).indices
    assert nodes[:, :3].tolist() == order[:, :3].tolist()  # ranks 0, 1, 2 at depth 1
    # Node (0, 1) is the second-best child of (0,): its distribution is the chain's step 2.
    order2 = torch.sort(chain.draft_logits[:, 1], dim=-1, descending=True, stable=True).indices
    assert nodes[:, 4].tolist() == order2[:, 1].tolist()


def test_generate_tree_greedy_equals_target(v16_target):
    d = build_drafter("eagle3", v16_target, block_size=3)
    ids = torch.randint(0, 16, (3, 6))
    mask = torch.ones(3, 6, dtype=torch.long)
    mask[1, :2] = 0
    out = dspark.generate(
        v16_target, d, ids, mask, max_new_tokens=14, temperature=0.0, tree_choices=TREE
    )
    for b in range(3):
        real = ids[b][mask[b].bool()][None]
        assert (
            out.sequences[b, 6:].tolist()
            == greedy_reference(v16_target, real, 14)[0, -14:].tolist()
        )
    tree_rounds = [r for r in out.rounds if r.proposed[0] == len(TREE)]
    assert tree_rounds  # rounds near the token budget fall back to chains
    assert any(a > 0 for r in tree_rounds for a in r.accepted)


def test_generate_tree_rejects_bad_setups(v16_target):
    ids = torch.ones(1, 3, dtype=torch.long)
    with pytest.raises(ValueError, match="tree_choices"):
        dspark.generate(
            v16_target,
            build_drafter("dflash", v16_target, num_layers=1),
            ids,
            max_new_tokens=4,
            tree_choices=TREE,
        )
    with pytest.raises(ValueError, match="choices"):
        dspark.generate(
            v16_target,
            build_drafter("eagle3", v16_target),
            ids,
            max_new_tokens=4,
            tree_choices=[(0, 1)],
        )


def test_tree_round_statistics(v16_target):
    d = build_drafter("eagle3", v16_target, block_size=3)
    out = dspark.generate(
        v16_target,
        d,
        torch.randint(0, 16, (4, 5)),
        max_new_tokens=10,
        temperature=1.0,
        seed=2,
        tree_choices=TREE,
    )
    for r in out.rounds:
        for p, a, f, dep, e in zip(
            r.proposed, r.accepted, r.first_rejection, r.depth, r.emitted, strict=True
        ):
            assert 0 <= a <= dep <= p
            assert f == (-1 if a == dep else a + 1)
            assert e <= a + 1
    assert sum(sum(r.emitted) for r in out.rounds) == int(out.num_generated.sum()) - 4
