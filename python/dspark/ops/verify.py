"""Lossless batched verification for speculative decoding (chains and trees).

The contract is ``docs/verify_batch.md``; the maths is ``docs/algorithms.md`` section 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, NamedTuple

import torch

from dspark import _C
from dspark._backend import require_cuda
from dspark._checks import as_int, as_int_tensor, as_request_tensor, check_tensor, cuda_stream
from dspark.sampling_params import SamplingParams, apply_sampling

__all__ = ["VerifyResult", "verify_batch"]

_FLOATS = (torch.float32, torch.bfloat16, torch.float16)
_Q_KIND = {None: 0, "probs": 1, "logits": 2}
_SAMPLING = {"with_replacement": 0, "without_replacement": 1}
_VALIDATE = ("cheap", "full", "none")
_MAX_PAD_DEPTH = 4096  # max_depth beyond N only widens the padding (kMaxPadDepth in C++)


class VerifyResult(NamedTuple):
    """Outputs of :func:`verify_batch` (R requests, D = max depth).

    Attributes
    ----------
    accept_len : Tensor (R,) int32
        Accepted draft tokens per request (0 .. D).
    num_emitted : Tensor (R,) int32
        Tokens emitted: ``accept_len + 1`` (0 when ``max_emit`` is 0).
    tokens : Tensor (R, D + 1) int32
        Emitted tokens (the accepted path, then the final token), -1 padded.
    final_token : Tensor (R,) int32
        The last emitted token: the bonus, or the correction drawn from the residual.
    final_is_bonus : Tensor (R,) bool
        True when no child was rejected at the last node (leaf or depth cap).
    path : Tensor (R, D) int32
        Local node indices of the accepted path, -1 padded.
    last_row : Tensor (R,) int32
        Global target row that produced ``final_token`` (-1 when nothing was emitted).
    next_offset : Tensor (R,) int64
        Philox offset for the next call: every call consumes exactly one offset per request.
    logprobs : Tensor (R, D + 1) float32 or None
        Log-probabilities of the emitted tokens under the processed target distribution (greedy
        requests: the untempered log-softmax); 0 where ``tokens`` is -1.
    """

    accept_len: torch.Tensor
    num_emitted: torch.Tensor
    tokens: torch.Tensor
    final_token: torch.Tensor
    final_is_bonus: torch.Tensor
    path: torch.Tensor
    last_row: torch.Tensor
    next_offset: torch.Tensor
    logprobs: torch.Tensor | None = None

    @property
    def emitted_indptr(self) -> torch.Tensor:
        """(R + 1,) int64 prefix sums of ``num_emitted`` (varlen layout)."""
        z = torch.zeros(1, dtype=torch.int64, device=self.num_emitted.device)
        return torch.cat([z, torch.cumsum(self.num_emitted.to(torch.int64), 0)])

    @property
    def tokens_flat(self) -> torch.Tensor:
        """All emitted tokens concatenated request by request (varlen mirror of ``tokens``)."""
        width = self.tokens.shape[1]
        keep = torch.arange(width, device=self.tokens.device)[None, :] < self.num_emitted[:, None]
        return self.tokens[keep]

    @staticmethod
    def empty(
        num_requests: int, max_depth: int, device: torch.device, logprobs: bool = False
    ) -> VerifyResult:
        """Allocate outputs (for ``out=``, e.g. under CUDA graphs)."""
        r, d = num_requests, max_depth
        # One int32 allocation carved into views (allocation dominates small calls).
        buf = torch.empty(r * (2 * d + 5), dtype=torch.int32, device=device)
        w = d + 1
        return VerifyResult(
            accept_len=buf[:r],
            num_emitted=buf[r : 2 * r],
            tokens=buf[2 * r : (2 + w) * r].view(r, w),
            final_token=buf[(2 + w) * r : (3 + w) * r],
            final_is_bonus=torch.empty(r, dtype=torch.bool, device=device),
            path=buf[(3 + w) * r : (3 + w + d) * r].view(r, d),
            last_row=buf[(3 + w + d) * r :],
            next_offset=torch.empty(r, dtype=torch.int64, device=device),
            logprobs=torch.empty(r, d + 1, dtype=torch.float32, device=device)
            if logprobs
            else None,
        )


def _check_range(name: str, t: torch.Tensor | None, ok: torch.Tensor | None, expected: str) -> None:
    if t is None or ok is None or bool(ok.all()):
        return
    bad = int(torch.nonzero(~ok)[0, 0])
    raise ValueError(f"{name}: expected {expected}, got {name}[{bad}] = {t[bad].item()}")


def _validate_rows(name: str, rows: torch.Tensor, is_probs: bool) -> None:
    """validate="full": NaN/inf in logits, negative or non-normalised probability rows."""
    x = rows.float()
    bad = torch.isnan(x).any(1) | torch.isposinf(x).any(1)
    if is_probs:
        bad |= (x < 0).any(1) | ((x.sum(1) - 1).abs() > 1e-3)
    else:
        bad |= torch.isneginf(x).all(1)
    if bool(bad.any()):
        i = int(torch.nonzero(bad)[0, 0])
        what = "non-negative rows summing to 1" if is_probs else "finite logits (-inf allowed)"
        raise ValueError(f"{name}: row {i} is invalid: expected {what} (validate='full')")


def verify_batch(
    target: torch.Tensor,
    draft_tokens: torch.Tensor,
    draft_indptr: torch.Tensor,
    *,
    parents: torch.Tensor | None = None,
    draft_probs: torch.Tensor | None = None,
    draft_logits: torch.Tensor | None = None,
    draft_sampling: Literal["with_replacement", "without_replacement"] = "with_replacement",
    temperature: torch.Tensor | float | None = None,
    top_k: torch.Tensor | int | None = None,
    top_p: torch.Tensor | float | None = None,
    min_p: torch.Tensor | float | None = None,
    target_is_probs: bool = False,
    seed: torch.Tensor | int | None = None,
    offset: torch.Tensor | int | None = None,
    generator: torch.Generator | None = None,
    max_depth: int | None = None,
    max_emit: torch.Tensor | int | None = None,
    return_logprobs: bool = False,
    out: VerifyResult | None = None,
    validate: Literal["cheap", "full", "none"] = "cheap",
    sampling: SamplingParams | Sequence[SamplingParams] | None = None,
) -> VerifyResult:
    """Verify draft chains or trees against the target, losslessly, for a batch of requests.

    Request ``r`` owns draft nodes ``[draft_indptr[r], draft_indptr[r+1])`` and target rows
    ``[draft_indptr[r] + r, draft_indptr[r+1] + r + 1)``: its first row is the anchor (it predicts
    the root's children) and row ``1 + i`` follows node ``i``, exactly what a verification forward
    over ``[x0, node_0, ..., node_{n-1}]`` produces. At each node the children are tried in index
    order with the rejection rule of ``docs/algorithms.md`` section 1; the output tokens are
    distributed exactly as sampling from the (processed) target alone.

    Parameters
    ----------
    target : Tensor (N + R, V) float32 | bfloat16 | float16
        Target logits (default) or probabilities (``target_is_probs=True``).
    draft_tokens : Tensor (N,) int32 | int64
        All requests' draft nodes, flattened.
    draft_indptr : Tensor (R + 1,) int32 | int64
        CSR offsets, ``draft_indptr[0] == 0``; a request may have 0 drafts.
    parents : Tensor (N,) int32 | int64, optional
        Local parent of each node (-1 = the anchor), ``parents[i] < i``. None: every request is a
        chain.
    draft_probs, draft_logits : Tensor (N, V), optional
        The distribution q each node was drawn from (siblings share it). ``draft_logits`` are
        softmax-ed as given: pass the logits of the distribution actually sampled from. Neither:
        deterministic drafts (a child is accepted with probability p(child)).
    draft_sampling : {"with_replacement", "without_replacement"}
        How siblings were drawn from q (trees with stochastic drafts).
    temperature : Tensor (R,) float32 or float, optional
        0 means greedy for that request; None means every request is greedy.
    top_k, top_p, min_p : Tensor (R,) or scalar, optional
        Applied after temperature, in this order; 0 / 1.0 / 0.0 disable. Ties at the cut are kept.
    target_is_probs : bool
        ``target`` holds probabilities (temperature T then maps p to p^(1/T), renormalised).
    seed, offset : Tensor (R,) int64 or int, optional
        Philox key and counter offset per request: a request's draws depend only on its own
        (seed, offset), never on its batch position. Default seeds come from ``generator`` (or
        torch's default generator); default offset 0.
    generator : torch.Generator, optional
        Source of default seeds.
    max_depth : int, optional
        Output width D. Default: the deepest tree (a host sync on CUDA; pass it under CUDA graphs).
        A smaller value caps the walk.
    max_emit : Tensor (R,) int32 or int, optional
        At most this many tokens are emitted per request: the walk accepts at most
        ``max_emit - 1`` drafts and the last token is the bonus, so every token stays lossless.
    return_logprobs : bool
        Also return log-probabilities of the emitted tokens.
    out : VerifyResult, optional
        Preallocated outputs (see :meth:`VerifyResult.empty`).
    sampling : SamplingParams or list of SamplingParams, optional
        Instead of ``temperature``, ``top_k``, ``top_p``, ``min_p``, ``seed`` and ``offset``
        (one per request, or one broadcast); passing both raises.
    validate : {"cheap", "full", "none"}
        "cheap": shapes, dtypes, devices, value ranges and tree structure (O(N)); "full": also
        NaN/inf rows and probability rows that do not sum to 1 (O(N V)); "none": only what
        memory safety needs (CUDA graphs).

    Returns
    -------
    VerifyResult

    Raises
    ------
    TypeError
        A non-tensor or a tensor of the wrong dtype.
    ValueError
        Wrong shapes, devices, value ranges or tree structure, an empty batch, or (with
        ``validate="full"``) invalid rows.

    Notes
    -----
    Sampled tokens come from an exponential race over fixed blocks of 1024 tokens (block chosen
    by mass, then the token inside it) with Philox4x32-10 keyed by (seed, offset, node), so the CPU
    and CUDA backends draw the same tokens. Residuals are evaluated on the fly: only the rows the
    walk visits are read, and a full-row residual pass happens only where a child is rejected.

    Examples
    --------
    >>> import torch, dspark
    >>> V = 8
    >>> target = torch.randn(3 + 1, V)           # one request, a chain of 3 drafts
    >>> drafts = target[:3].argmax(-1).int()     # drafts that agree with greedy target
    >>> res = dspark.verify_batch(target, drafts, torch.tensor([0, 3], dtype=torch.int32))
    >>> int(res.accept_len[0]), bool(res.final_is_bonus[0])
    (3, True)
    """
    if validate not in _VALIDATE:
        raise ValueError(f"validate: expected one of {_VALIDATE}, got {validate!r}")
    if draft_sampling not in _SAMPLING:
        raise ValueError(
            f"draft_sampling: expected one of {tuple(_SAMPLING)}, got {draft_sampling!r}"
        )
    check_tensor("target", target, dtypes=_FLOATS, shape=(None, None))
    dev = target.device
    if dev.type == "cuda":
        require_cuda("target")
    elif dev.type != "cpu":
        raise ValueError(f"target: expected a CPU or CUDA tensor, got device {dev}")
    # Dtypes, devices, shapes against N and R, and the tree structure are checked by the native
    # op (csrc/ops/verify.cpp); here only what the conversions need (R, N and integer widths).
    check_tensor("draft_tokens", draft_tokens, shape=(None,))
    check_tensor("draft_indptr", draft_indptr, shape=(None,))
    num_req = draft_indptr.shape[0] - 1
    num_nodes, vocab = draft_tokens.shape[0], target.shape[1]
    if num_req < 1:
        raise ValueError(
            f"draft_indptr: empty batch: expected shape (R + 1,) with R >= 1, got "
            f"({draft_indptr.shape[0]},)"
        )
    if target.stride(-1) != 1:
        target = target.contiguous()
    draft_indptr = as_int_tensor("draft_indptr", draft_indptr)
    draft_tokens = draft_tokens if draft_tokens.is_contiguous() else draft_tokens.contiguous()
    if parents is not None:
        parents = as_int_tensor("parents", check_tensor("parents", parents))
    if draft_probs is not None and draft_logits is not None:
        raise ValueError("draft_probs, draft_logits: pass at most one of them")
    q_name = "draft_probs" if draft_probs is not None else "draft_logits"
    draft_q = draft_probs if draft_probs is not None else draft_logits
    q_kind = _Q_KIND[None if draft_q is None else q_name.removeprefix("draft_")]
    if draft_q is not None and check_tensor(q_name, draft_q).stride(-1) != 1:
        draft_q = draft_q.contiguous()

    if sampling is not None:
        b = apply_sampling(
            sampling,
            num_req,
            dev,
            generator,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            min_p=min_p,
            seed=seed,
            offset=offset,
        )
        temperature, top_k, top_p, min_p, seed, offset = (
            b.temperature,
            b.top_k,
            b.top_p,
            b.min_p,
            b.seed,
            b.offset,
        )
    temperature_t = as_request_tensor("temperature", temperature, num_req, torch.float32, dev)
    top_k_t = as_request_tensor("top_k", top_k, num_req, torch.int32, dev)
    top_p_t = as_request_tensor("top_p", top_p, num_req, torch.float32, dev)
    min_p_t = as_request_tensor("min_p", min_p, num_req, torch.float32, dev)
    max_emit_t = as_request_tensor("max_emit", max_emit, num_req, torch.int32, dev)
    if seed is None:
        seed = torch.randint(0, 2**62, (num_req,), generator=generator, dtype=torch.int64)
    seed_t = as_request_tensor("seed", seed, num_req, torch.int64, dev)
    offset_t = as_request_tensor(
        "offset", 0 if offset is None else offset, num_req, torch.int64, dev
    )

    if validate != "none" and dev.type == "cuda":  # on the CPU the native entry checks these
        t = temperature_t
        _check_range(
            "temperature",
            t,
            None if t is None else (t >= 0) & torch.isfinite(t),
            "finite values >= 0",
        )
        _check_range("top_k", top_k_t, None if top_k_t is None else top_k_t >= 0, "values >= 0")
        _check_range(
            "top_p",
            top_p_t,
            None if top_p_t is None else (top_p_t > 0) & (top_p_t <= 1),
            "values in (0, 1]",
        )
        _check_range(
            "min_p",
            min_p_t,
            None if min_p_t is None else (min_p_t >= 0) & (min_p_t <= 1),
            "values in [0, 1]",
        )
        _check_range(
            "max_emit", max_emit_t, None if max_emit_t is None else max_emit_t >= 0, "values >= 0"
        )
    need_depth = max_depth is None
    depth = 0
    if need_depth or (validate != "none" and dev.type == "cuda"):
        # The C++ check also runs inside the CPU kernel call (it is what makes it memory-safe);
        # here it yields the depth and covers CUDA inputs, whose indices are copied to the host.
        cpu = torch.device("cpu")
        depth = _C.check_verify_structure(
            draft_tokens.to(cpu),
            draft_indptr.to(cpu),
            None if parents is None else parents.to(cpu),
            vocab,
        )
    if validate == "full":
        _validate_rows("target", target, target_is_probs)
        if draft_q is not None:
            _validate_rows(q_name, draft_q, q_kind == 1)
    if need_depth:
        max_depth = depth
    # Bounded before the outputs are allocated; the same bound as csrc/ops/verify.cpp.
    max_depth = as_int("max_depth", max_depth, 0, max(num_nodes, _MAX_PAD_DEPTH))

    res = out if out is not None else VerifyResult.empty(num_req, max_depth, dev, return_logprobs)
    if return_logprobs and res.logprobs is None:
        raise ValueError(
            "out: return_logprobs=True needs out.logprobs (VerifyResult.empty(..., logprobs=True))"
        )
    _C.verify_batch(
        target,
        draft_tokens,
        draft_indptr,
        parents,
        draft_q,
        q_kind,
        _SAMPLING[draft_sampling],
        temperature_t,
        top_k_t,
        top_p_t,
        min_p_t,
        seed_t,
        offset_t,
        max_emit_t,
        bool(target_is_probs),
        int(max_depth),
        res.accept_len,
        res.num_emitted,
        res.tokens,
        res.final_token,
        res.final_is_bonus,
        res.path,
        res.last_row,
        res.next_offset,
        res.logprobs if return_logprobs else None,
        cuda_stream(target),
    )
    return res if return_logprobs or res.logprobs is None else res._replace(logprobs=None)
