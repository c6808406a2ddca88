"""markov_sample (DSpark's sequential draft step) against the loop reference, and the sampler's
distribution."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from dspark.models import build_drafter, markov_sample, process_logits
from dspark.models.sampling import sample_processed
from tests.reference.draft_step import draft_step_ref, process_row_ref


@pytest.mark.parametrize(
    ("temperature", "top_k", "top_p"),
    [
        ([1.0, 0.7, 1.3], [0, 0, 0], [1.0, 1.0, 1.0]),
        ([0.0, 1.0, 0.5], [0, 5, 17], [1.0, 0.8, 0.95]),
        ([0.9, 0.0, 1.0], [3, 0, 1], [0.3, 1.0, 1.0]),
    ],
)
def test_markov_sample_matches_reference(qwen3_target, temperature, top_k, top_p):
    d = build_drafter("dspark", qwen3_target, num_layers=1, markov_rank=24, block_size=5)
    with torch.no_grad():  # make the bias matter: the init scale of w1/w2 is tiny
        d.head.w1.weight.normal_(0, 1.0)
        d.head.w2.weight.normal_(0, 1.0)
    bsz, steps, vocab = 3, 5, 256
    base, hidden = torch.randn(bsz, steps, vocab) * 2, torch.randn(bsz, steps, 64)
    anchor = torch.tensor([3, 100, 255])
    noise = torch.empty(bsz, steps, vocab).exponential_()
    with torch.no_grad():
        out = markov_sample(
            base,
            hidden,
            anchor,
            d.head,
            d.confidence,
            temperature=torch.tensor(temperature),
            top_k=torch.tensor(top_k),
            top_p=torch.tensor(top_p),
            exp_noise=noise,
        )
    tok, logits, conf = draft_step_ref(
        base,
        hidden,
        anchor,
        d.head.w1.weight.detach(),
        d.head.w2.weight.detach(),
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        exp_noise=noise,
        conf_weight=d.confidence.proj.weight.detach()[0],
        conf_bias=float(d.confidence.proj.bias.detach()),
    )
    assert torch.equal(out.tokens, tok), (out.tokens, tok)
    finite = torch.isfinite(logits)
    assert torch.equal(torch.isfinite(out.draft_logits), finite)
    torch.testing.assert_close(
        out.draft_logits[finite].double(), logits[finite], atol=1e-4, rtol=1e-4
    )
    torch.testing.assert_close(out.confidence.double(), conf, atol=1e-5, rtol=1e-5)


def test_markov_sample_rnn_state_carried(qwen3_target):
    """Splitting a block into two calls and passing the state gives the same draft."""
    d = build_drafter("dspark", qwen3_target, num_layers=1, markov_rank=16, head_type="rnn")
    base, hidden = torch.randn(2, 6, 256), torch.randn(2, 6, 64)
    anchor, noise = torch.tensor([1, 2]), torch.empty(2, 6, 256).exponential_()
    t = torch.ones(2)
    with torch.no_grad():
        full = markov_sample(base, hidden, anchor, d.head, temperature=t, exp_noise=noise)
        a = markov_sample(
            base[:, :3], hidden[:, :3], anchor, d.head, temperature=t, exp_noise=noise[:, :3]
        )
        b = markov_sample(
            base[:, 3:],
            hidden[:, 3:],
            a.tokens[:, -1],
            d.head,
            temperature=t,
            exp_noise=noise[:, 3:],
            state=a.state,
        )
    assert torch.equal(torch.cat([a.tokens, b.tokens], 1), full.tokens)
    torch.testing.assert_close(torch.cat([a.draft_logits, b.draft_logits], 1), full.draft_logits)


def test_process_logits_matches_reference():
    x = torch.randn(6, 40)
    x[0, :4] = 2.0  # ties at the top-k cut are kept
    temp = torch.tensor([1.0, 0.5, 2.0, 0.0, 1.0, 0.8])
    k = torch.tensor([3, 0, 10, 2, 40, 0])
    p = torch.tensor([1.0, 0.7, 0.9, 1.0, 0.2, 1.0])
    got = process_logits(x, temp, k, p)
    for i in range(6):
        ref = process_row_ref(x[i], float(temp[i]), int(k[i]), float(p[i]))
        assert torch.equal(torch.isfinite(got[i]), torch.isfinite(ref)), i
        fin = torch.isfinite(ref)
        torch.testing.assert_close(got[i][fin].double(), ref[fin], atol=1e-5, rtol=1e-5)
    assert int(torch.isfinite(got[0]).sum()) == 4


def test_sample_processed_distribution():
    """Exponential race samples softmax(logits): chi-square, alpha = 1e-3, N = 60,000 over V = 10.

    With N = 60,000 a TV shift of 0.02 between the two likeliest bins (p ~ 0.3) has noncentrality
    ~2 N (0.02^2 / 0.3) = 160, power > 0.99 at 9 degrees of freedom.
    """
    g = torch.Generator().manual_seed(7)
    logits = torch.linspace(-2.0, 1.0, 10)[None].repeat(60_000, 1)
    tok = sample_processed(logits, torch.zeros(60_000, dtype=torch.bool), generator=g)
    counts = np.bincount(tok.numpy(), minlength=10)
    probs = torch.softmax(logits[0].double(), 0).numpy()
    assert stats.chisquare(counts, probs * counts.sum()).pvalue > 1e-3
