"""dspark.draft_step against the plain reference (same Philox numbers), its distribution, its use
with verify_batch, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import dspark
from tests.reference.draft_step_fused import draft_step_ref
from tests.stats import chi2_power, chi2_pvalue


def make(R=3, G=4, V=300, r=16, d=8, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "base_logits": (torch.randn(R, G, V, generator=g) * 2).to(dtype),
        "w1": (torch.randn(V, r, generator=g) * 0.3).to(dtype),
        "w2": (torch.randn(V, r, generator=g) * 0.3).to(dtype),
        "anchors": torch.randint(0, V, (R,), generator=g),
        "hidden": torch.randn(R, G, d, generator=g).to(dtype),
        "conf_weight": torch.randn(d + r, generator=g) * 0.2,
        "conf_bias": 0.1,
        "seed": torch.randint(0, 2**40, (R,), generator=g),
        "offset": torch.randint(0, 2**20, (R,), generator=g),
    }


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("candidates", [0, 7])
def test_draft_step_matches_reference(dtype, candidates):
    a = make(R=4, V=1500 if candidates == 0 else 300, dtype=dtype)
    temperature = torch.tensor([1.0, 0.0, 0.7, 1.3])
    out = dspark.draft_step(**a, temperature=temperature, candidates=candidates)
    tok, logits, conf = draft_step_ref(
        a["base_logits"].double().numpy(),
        a["w1"].double().numpy(),
        a["w2"].double().numpy(),
        a["anchors"].numpy(),
        temperature.numpy(),
        a["seed"].numpy(),
        a["offset"].numpy(),
        hidden=a["hidden"].double().numpy(),
        conf_weight=a["conf_weight"].numpy(),
        conf_bias=a["conf_bias"],
        candidates=candidates,
    )
    assert out.tokens.tolist() == tok.tolist()
    finite = np.isfinite(logits)
    assert torch.equal(torch.isfinite(out.draft_logits), torch.from_numpy(finite))
    np.testing.assert_allclose(
        out.draft_logits.numpy()[finite], logits[finite], rtol=1e-4, atol=1e-4
    )
    np.testing.assert_allclose(out.confidence.numpy(), conf, rtol=1e-4, atol=1e-5)
    assert torch.equal(out.next_offset, a["offset"] + 1)


def test_draft_step_first_token_distribution():
    V, R = 8, 100_000
    a = make(R=1, G=1, V=V, r=4)
    u, w1, w2 = a["base_logits"][0, 0], a["w1"], a["w2"]
    anchor = int(a["anchors"][0])
    out = dspark.draft_step(
        u.expand(R, 1, V).contiguous(),
        w1,
        w2,
        torch.full((R,), anchor),
        temperature=0.8,
        seed=torch.arange(R),
    )
    logits = (u.double() + w2.double() @ w1[anchor].double()) / 0.8
    p = torch.softmax(logits, -1).numpy()
    assert chi2_power(p, R) > 0.99  # detects a 0.01 TV shift at alpha 1e-3
    assert chi2_pvalue(np.bincount(out.tokens[:, 0].numpy(), minlength=V), p) > 1e-3


def test_draft_step_feeds_verify_batch_losslessly():
    """Drafts from draft_step, verified with its draft_logits, keep the target's first-token law."""
    V, R, G = 8, 100_000, 2
    g = torch.Generator().manual_seed(3)
    target_logits = torch.randn(V, generator=g)
    a = make(R=1, G=G, V=V, r=4, seed=5)
    base = a["base_logits"].expand(R, G, V).contiguous()
    out = dspark.draft_step(
        base,
        a["w1"],
        a["w2"],
        torch.full((R,), 2),
        temperature=1.0,
        seed=torch.arange(R),
        candidates=5,
    )
    target = target_logits.expand(R * (G + 1), V).contiguous()  # same target row everywhere
    res = dspark.verify_batch(
        target,
        out.tokens.reshape(-1),
        torch.arange(0, R * G + 1, G, dtype=torch.int32),
        draft_logits=out.draft_logits.reshape(R * G, V),
        temperature=1.0,
        seed=torch.arange(R) + 7,
    )
    p = torch.softmax(target_logits.double(), -1).numpy()
    assert chi2_pvalue(np.bincount(res.tokens[:, 0].numpy(), minlength=V), p) > 1e-3


BAD = [
    ({"base_logits": torch.randn(2, 3)}, ValueError, "base_logits: expected shape"),
    ({"w2": torch.randn(300, 15)}, ValueError, r"w2: expected shape \(300, 16\)"),
    ({"w2": torch.randn(300, 16, dtype=torch.float64)}, TypeError, "w2: expected dtype float32"),
    ({"anchors": torch.tensor([0, 1, 300])}, ValueError, r"anchors: expected ids in \[0, 300\)"),
    ({"anchors": torch.tensor([0, 1])}, ValueError, r"anchors: expected shape \(3,\)"),
    ({"conf_weight": None}, ValueError, "pass both"),
    ({"conf_weight": torch.randn(5)}, ValueError, r"conf_weight: expected shape \(24,\)"),
    ({"temperature": torch.tensor([1.0, -1.0, 1.0])}, ValueError, "temperature"),
    ({"candidates": -3}, ValueError, "candidates"),
]


@pytest.mark.parametrize(("kw", "exc", "match"), BAD, ids=[m for _, _, m in BAD])
def test_draft_step_rejects_bad_input(kw, exc, match):
    a = make()
    a.update(kw)
    with pytest.raises(exc, match=match):
        dspark.draft_step(**a)


@pytest.mark.cuda
def test_draft_step_cuda_matches_cpu():
    a = make(R=4, V=1500)
    cpu = dspark.draft_step(**a, temperature=torch.tensor([1.0, 0.0, 0.7, 1.3]))
    dev = {k: (v.cuda() if isinstance(v, torch.Tensor) else v) for k, v in a.items()}
    gpu = dspark.draft_step(**dev, temperature=torch.tensor([1.0, 0.0, 0.7, 1.3]).cuda())
    assert torch.equal(cpu.tokens, gpu.tokens.cpu())
