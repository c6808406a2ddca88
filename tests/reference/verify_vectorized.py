"""A fair, batched PyTorch verifier for chains (the benchmark baseline), in the style of vLLM's
rejection sampler: gather every request's rows into a padded [R, G + 1, V] tensor, softmax them
all, accept with one vectorised comparison, and sample the residual or bonus row of each request
with an exponential race. Temperature per request (0 = greedy); no top-k/top-p.

Tested against the loop reference in tests/ops/test_verify_vectorized.py.
"""

from __future__ import annotations

import torch


def verify_chain_torch(
    target: torch.Tensor,
    draft_tokens: torch.Tensor,
    draft_indptr: torch.Tensor,
    *,
    draft_probs: torch.Tensor | None = None,
    temperature: torch.Tensor | None = None,
    target_is_probs: bool = False,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns ``(accept_len [R], final_token [R])``."""
    R = draft_indptr.numel() - 1
    lens = (draft_indptr[1:] - draft_indptr[:-1]).long()
    G = int(lens.max()) if R else 0
    j = torch.arange(G + 1)
    row0 = draft_indptr[:-1].long() + torch.arange(R)
    rows = row0[:, None] + torch.minimum(j[None, :], lens[:, None])  # [R, G+1]
    x = target[rows].float()  # [R, G+1, V]
    node = draft_indptr[:-1].long()[:, None] + torch.minimum(
        j[None, :G], (lens[:, None] - 1).clamp(min=0)
    )
    drafts = draft_tokens.long()[node] if G else torch.zeros(R, 0, dtype=torch.long)  # [R, G]
    valid = j[None, :G] < lens[:, None]
    t = torch.zeros(R) if temperature is None else temperature.float()
    greedy = t == 0
    if target_is_probs:
        inv_t = torch.where(greedy, 1.0, 1.0 / t.clamp(min=1e-6))[:, None, None]
        probs = x.clamp(min=0).pow(inv_t)
        probs = probs / probs.sum(-1, keepdim=True)
    else:
        probs = torch.softmax(x / torch.where(greedy, 1.0, t)[:, None, None], dim=-1)
    argmax = x.argmax(-1)  # [R, G+1]
    p_tok = probs[:, :G].gather(-1, drafts[..., None]).squeeze(-1)
    if draft_probs is not None:
        q_all = draft_probs.float()[node]  # [R, G, V]
        q_tok = q_all.gather(-1, drafts[..., None]).squeeze(-1)
    else:
        q_all, q_tok = None, torch.ones_like(p_tok)
    u = torch.rand(p_tok.shape, generator=generator)
    acc_sampled = u * q_tok < p_tok
    acc_greedy = drafts == argmax[:, :G]
    accept = torch.where(greedy[:, None], acc_greedy, acc_sampled) & valid
    accept_len = (
        torch.cumprod(accept.int(), dim=1).sum(1) if G else torch.zeros(R, dtype=torch.long)
    )
    k = accept_len.long()
    p_k = probs[torch.arange(R), k]  # [R, V] row at the stopping position
    rejected = k < lens
    if q_all is not None and G:
        q_k = q_all[torch.arange(R), k.clamp(max=G - 1)]
    else:
        q_k = torch.zeros_like(p_k)
        if G:
            q_k.scatter_(1, drafts[torch.arange(R), k.clamp(max=G - 1)][:, None], 1.0)
    resid = torch.clamp(p_k - q_k, min=0)
    mass = resid.sum(-1, keepdim=True)
    resid = torch.where(mass > 0, resid / mass.clamp(min=1e-30), p_k)
    w = torch.where(rejected[:, None], resid, p_k)
    e = torch.empty_like(w).exponential_(generator=generator)
    sampled = (w / e).argmax(-1)
    final = torch.where(greedy, argmax[torch.arange(R), k], sampled)
    return accept_len.int(), final.int()


def verify_tree_torch(
    target: torch.Tensor,
    draft_tokens: torch.Tensor,
    draft_indptr: torch.Tensor,
    parents: torch.Tensor,
    *,
    draft_probs: torch.Tensor | None = None,
    temperature: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tree verification as a PyTorch engine without a tree kernel would do it: one batched
    softmax over every row, then a per-request walk with scalar gathers and row-wide residuals
    (with-replacement rule). Returns ``(accept_len [R], final_token [R])``."""
    R = draft_indptr.numel() - 1
    t = torch.zeros(R) if temperature is None else temperature.float()
    row_t = torch.repeat_interleave(
        torch.where(t == 0, 1.0, t), (draft_indptr[1:] - draft_indptr[:-1]).long() + 1
    )
    probs = torch.softmax(target.float() / row_t[:, None], dim=-1)
    argmax = target.argmax(-1)
    ip, par, tok = draft_indptr.tolist(), parents.tolist(), draft_tokens.tolist()
    acc_out, final_out = [], []
    for r in range(R):
        n0, n = ip[r], ip[r + 1] - ip[r]
        greedy = float(t[r]) == 0
        cur, depth = -1, 0
        while True:
            row = n0 + r + cur + 1
            kids = [c for c in range(n) if par[n0 + c] == cur]
            P, nxt = probs[row], None
            for c in kids:
                tk = tok[n0 + c]
                if greedy:
                    if tk == int(argmax[row]):
                        nxt = c
                        break
                    continue
                q = draft_probs[n0 + c].float() if draft_probs is not None else None
                qt = float(q[tk]) if q is not None else 1.0
                if float(torch.rand((), generator=generator)) * qt < float(P[tk]):
                    nxt = c
                    break
                if q is None:
                    q = torch.zeros_like(P)
                    q[tk] = 1.0
                res = torch.clamp(P - q, min=0)
                P = res / res.sum() if float(res.sum()) > 0 else probs[row]
            if nxt is not None:
                cur, depth = nxt, depth + 1
                continue
            if greedy:
                final = int(argmax[row])
            else:
                e = torch.empty_like(P).exponential_(generator=generator)
                final = int((P / e).argmax())
            acc_out.append(depth)
            final_out.append(final)
            break
    return torch.tensor(acc_out, dtype=torch.int32), torch.tensor(final_out, dtype=torch.int32)
