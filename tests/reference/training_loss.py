"""Plain reference losses (docs/algorithms.md section 6.2), one block / position at a time."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def dspark_loss_ref(draft_logits, conf_logits, target_logits, labels, valid, decay, alphas):
    """0.1 L_ce + 0.9 L_tv + 1.0 L_conf (alphas), each normalised by sum of w = valid*exp(-k/c).

    draft_logits, target_logits: (N, G, V); conf_logits: (N, G) or None; labels, valid: (N, G).
    """
    n, g, _ = draft_logits.shape
    ce = tv = cf = wsum = 0.0
    for b in range(n):
        for k in range(g):
            if not valid[b, k]:
                continue
            w = math.exp(-k / decay)
            pd = torch.softmax(draft_logits[b, k].double(), -1)
            pt = torch.softmax(target_logits[b, k].double(), -1)
            ce = ce - w * torch.log(pd[labels[b, k]])
            l1 = (pd - pt).abs().sum()
            tv = tv + w * l1
            if conf_logits is not None:
                c_star = (1 - 0.5 * l1.detach()).clamp(0, 1)
                cf = cf + w * F.binary_cross_entropy_with_logits(conf_logits[b, k].double(), c_star)
            wsum += w
    return (alphas[0] * ce + alphas[1] * tv + alphas[2] * cf) / wsum


def eagle3_loss_ref(step_logits, target_logits, mask, decay):
    """sum_s decay^s sum_t mask[s, t] * soft-CE(p_target[s, t], q[s, t]) / sum_t mask[0, t].

    step_logits, target_logits: (S, T, V) (target_logits[s, t] gives the label's distribution).
    """
    s_n, t_n, _ = step_logits.shape
    total = 0.0
    for s in range(s_n):
        for t in range(t_n):
            if mask[s, t]:
                p = torch.softmax(target_logits[s, t].double(), -1)
                logq = torch.log_softmax(step_logits[s, t].double(), -1)
                total = total - decay**s * (p * logq).sum()
    return total / mask[0].sum()
