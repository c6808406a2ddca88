"""Chunked, checkpointed losses vs plain references (values and gradients)."""

from __future__ import annotations

import pytest
import torch

from dspark.models import block_targets, build_drafter
from dspark.training.losses import block_loss, eagle3_loss
from tests._tiny import tiny_qwen3
from tests.reference.training_loss import dspark_loss_ref, eagle3_loss_ref


@pytest.fixture(scope="module")
def small_target():
    return tiny_qwen3(vocab=96, layers=3, hidden=32, logit_scale=4.0)


def _packed(target, lens=(11, 7)):
    torch.manual_seed(0)
    ids = torch.randint(0, 96, (sum(lens),))
    cu = torch.tensor([0, *torch.tensor(lens).cumsum(0).tolist()])
    mask = torch.rand(sum(lens)) < 0.8
    feats = torch.randn(sum(lens), 2 * 32)
    last = torch.randn(sum(lens), 32)
    return ids, cu, mask, feats, last


@pytest.mark.parametrize(
    ("kind", "chunk", "heads"),
    [("dspark", 3, False), ("dflash", 2, False), ("dspark", 100, True), ("dflash", 3, True)],
)
def test_block_loss_matches_reference(small_target, kind, chunk, heads):
    kw = {"markov_rank": 8} if kind == "dspark" else {}
    d = build_drafter(kind, small_target, num_layers=1, block_size=4, feature_layers=[0, 1], **kw)
    ids, cu, mask, feats, last = _packed(small_target)
    anchors = torch.tensor([0, 2, 5, 9, 11, 13, 15])
    labels, valid = block_targets(ids, cu, anchors, 4, mask)
    full = d.forward_train(feats, ids, cu, anchors, teacher_tokens=labels)
    out = full if heads else d.forward_train(feats, ids, cu, anchors, labels, heads=False)
    assert (out.logits is None) == (not heads)
    alphas = (0.1, 0.9, 1.0) if kind == "dspark" else (1.0, 0.0, 0.0)
    parts = block_loss(
        d, out, anchors, labels, valid, last, alphas=alphas, chunk=chunk, input_ids=ids
    )
    got = parts.total / parts.weight
    rows = (anchors[:, None] + torch.arange(4)[None]).clamp_max(ids.shape[0] - 1)
    with torch.no_grad():
        tl = d.compute_logits(last[rows])
    dl = full.markov_logits if kind == "dspark" else full.logits
    ref = dspark_loss_ref(dl, full.confidence_logits, tl, labels, valid, 4.0, alphas)
    torch.testing.assert_close(got.double(), ref, rtol=1e-5, atol=1e-6)
    params = [p for p in d.parameters() if p.requires_grad]
    g_got = torch.autograd.grad(got, params, retain_graph=True, allow_unused=True)
    g_ref = torch.autograd.grad(ref, params, allow_unused=True)
    for a, b in zip(g_got, g_ref, strict=True):
        if b is not None:
            torch.testing.assert_close(a.double(), b.double(), rtol=1e-4, atol=1e-6)
    assert parts.accept_count.tolist() == valid.float().sum(0).tolist()


@pytest.mark.parametrize("whole", [True, False], ids=["whole-table", "chunked-checkpointed"])
@pytest.mark.parametrize("heads", [True, False])
def test_eagle3_loss_matches_reference(small_target, heads, whole, monkeypatch):
    # Both code paths: the whole (T, V) target table without checkpointing (small vocabularies)
    # and the per-chunk recomputation under checkpointing (large ones).
    import dspark.training.losses as losses

    monkeypatch.setattr(losses, "_SMALL_ELEMS", 1 << 40 if whole else 0)
    d = build_drafter("eagle3", small_target, block_size=3, feature_layers=[0, 1])
    ids, cu, mask, feats, last = _packed(small_target)
    full = d.forward_train(feats, ids, cu)
    out = full if heads else d.forward_train(feats, ids, cu, heads=False)
    parts = eagle3_loss(d, out, mask, last, step_decay=0.8, chunk=5)
    total = ids.shape[0]
    lab = (torch.arange(total)[None] + 2 + torch.arange(3)[:, None]).clamp_max(total - 1)
    m = out.valid & mask[lab]
    with torch.no_grad():
        tl = d.compute_logits(last[lab - 1])
    ref = eagle3_loss_ref(full.logits, tl, m, 0.8)
    torch.testing.assert_close((parts.total / parts.weight).double(), ref, rtol=1e-5, atol=1e-6)
    g = torch.autograd.grad(parts.total / parts.weight, d.fc.weight, retain_graph=True)[0]
    gr = torch.autograd.grad(ref, d.fc.weight)[0]
    torch.testing.assert_close(g.double(), gr.double(), rtol=1e-4, atol=1e-6)
