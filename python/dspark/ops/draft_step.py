"""The fused DSpark draft step: the sequential stage of the drafter in one native call.

``x_k ~ softmax((U_k + W2 . W1[x_{k-1}]) / T)`` for k = 1..G, left to right, with the confidence
head ``c_k = sigmoid(w . [h_k ; W1[x_{k-1}]] + b)`` (docs/algorithms.md section 2.4).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch

from dspark import _C
from dspark._backend import require_cuda
from dspark._checks import as_float, as_int, as_request_tensor, check_tensor, cuda_stream
from dspark.sampling_params import SamplingParams, apply_sampling

__all__ = ["DraftStepResult", "draft_step"]

_FLOATS = (torch.float32, torch.bfloat16, torch.float16)


class DraftStepResult(NamedTuple):
    """Outputs of :func:`draft_step`.

    Attributes
    ----------
    tokens : Tensor (R, G) int32
        Drafted tokens x_1..x_G.
    draft_logits : Tensor (R, G, V) float32
        The logits each token was sampled from, ``(U_k + B_k) / T`` (raw for greedy rows; -inf
        outside the candidates when ``candidates`` > 0). Pass them to ``verify_batch`` as
        ``draft_logits`` so verification sees exactly the distribution that was sampled.
    confidence : Tensor (R, G) float32 or None
        c_k per position (None without a confidence head).
    next_offset : Tensor (R,) int64
        Philox offset after this call (one offset per request per call).
    """

    tokens: torch.Tensor
    draft_logits: torch.Tensor
    confidence: torch.Tensor | None
    next_offset: torch.Tensor


def draft_step(
    base_logits: torch.Tensor,
    w1: torch.Tensor,
    w2: torch.Tensor,
    anchors: torch.Tensor,
    *,
    temperature: torch.Tensor | float | None = None,
    seed: torch.Tensor | int | None = None,
    offset: torch.Tensor | int | None = None,
    generator: torch.Generator | None = None,
    hidden: torch.Tensor | None = None,
    conf_weight: torch.Tensor | None = None,
    conf_bias: float = 0.0,
    candidates: int = 0,
    sampling: SamplingParams | Sequence[SamplingParams] | None = None,
) -> DraftStepResult:
    """Run DSpark's sequential draft stage (vanilla Markov head) for a batch, fused.

    Parameters
    ----------
    base_logits : Tensor (R, G, V) float32 | bfloat16 | float16
        ``U_k`` from the parallel backbone.
    w1 : Tensor (V, r)
        Markov embedding table (``nn.Embedding(V, r).weight``).
    w2 : Tensor (V, r)
        Markov output projection (``nn.Linear(r, V).weight``), same dtype as ``w1``.
    anchors : Tensor (R,) int32 | int64
        ``x_0`` per request.
    temperature : Tensor (R,) float32 or float, optional
        0 (or None) means greedy drafting for that request.
    seed, offset : Tensor (R,) int64 or int, optional
        Philox key and offset per request (draws never collide with ``verify_batch``'s, even for
        the same pair). Default seeds from ``generator``; default offset 0.
    generator : torch.Generator, optional
    hidden : Tensor (R, G, d), optional
        ``h_k`` for the confidence head (with ``conf_weight``).
    conf_weight : Tensor (d + r,) float32, optional
        Confidence head weight over ``[h_k ; W1[x_{k-1}]]``; ``conf_bias`` its bias.
    candidates : int
        0: exact (the bias for every token). K > 0: only the top-K tokens of ``U_k`` are
        candidates; the returned ``draft_logits`` are -inf elsewhere, so verification stays
        lossless with respect to what was drafted (CPU only).
    sampling : SamplingParams or list of SamplingParams, optional
        Instead of ``temperature``, ``seed`` and ``offset`` (top-k/top-p/min-p do not apply to
        drafting); passing both raises.

    Returns
    -------
    DraftStepResult

    Examples
    --------
    >>> import torch, dspark
    >>> R, G, V, r = 2, 3, 50, 8
    >>> out = dspark.draft_step(torch.randn(R, G, V), torch.randn(V, r), torch.randn(V, r),
    ...                         torch.tensor([1, 2]), temperature=1.0, seed=0)
    >>> out.tokens.shape, out.draft_logits.shape
    (torch.Size([2, 3]), torch.Size([2, 3, 50]))
    """
    check_tensor("base_logits", base_logits, dtypes=_FLOATS, shape=(None, None, None))
    dev = base_logits.device
    if dev.type == "cuda":
        require_cuda("base_logits")
    num_req, steps, vocab = base_logits.shape
    # Shapes, dtypes, devices and (CPU) values are checked by the native op (csrc/ops/
    # draft_step.cpp); here only what the conversions and the allocations need.
    for name, x in (("w1", w1), ("w2", w2), ("anchors", anchors)):
        check_tensor(name, x)
    for opt_name, opt in (("hidden", hidden), ("conf_weight", conf_weight)):
        if opt is not None:
            check_tensor(opt_name, opt)
    candidates = as_int("candidates", candidates, 0, 2**31 - 1)
    if sampling is not None:
        b = apply_sampling(
            sampling, num_req, dev, generator, temperature=temperature, seed=seed, offset=offset
        )
        temperature, seed, offset = b.temperature, b.seed, b.offset
    temperature_t = as_request_tensor("temperature", temperature, num_req, torch.float32, dev)
    if dev.type == "cuda":  # on the CPU the native entry checks the values on the host
        if bool(((anchors < 0) | (anchors >= vocab)).any()):
            raise ValueError(f"anchors: expected ids in [0, {vocab}), got {anchors.tolist()}")
        if temperature_t is not None and not bool(
            ((temperature_t >= 0) & torch.isfinite(temperature_t)).all()
        ):
            raise ValueError(
                f"temperature: expected finite values >= 0, got {temperature_t.tolist()}"
            )
    if seed is None:
        seed = torch.randint(0, 2**62, (num_req,), generator=generator, dtype=torch.int64)
    seed_t = as_request_tensor("seed", seed, num_req, torch.int64, dev)
    offset_t = as_request_tensor(
        "offset", 0 if offset is None else offset, num_req, torch.int64, dev
    )
    if base_logits.stride(-1) != 1:
        base_logits = base_logits.contiguous()
    w1, w2, anchors = w1.contiguous(), w2.contiguous(), anchors.contiguous()
    if hidden is not None and hidden.stride(-1) != 1:
        hidden = hidden.contiguous()
    tokens = torch.empty(num_req, steps, dtype=torch.int32, device=dev)
    logits = torch.empty(num_req, steps, vocab, dtype=torch.float32, device=dev)
    conf = (
        torch.empty(num_req, steps, dtype=torch.float32, device=dev) if hidden is not None else None
    )
    next_offset = torch.empty(num_req, dtype=torch.int64, device=dev)
    _C.draft_step(
        base_logits,
        w1,
        w2,
        anchors,
        temperature_t,
        seed_t,
        offset_t,
        hidden,
        conf_weight,
        as_float("conf_bias", conf_bias),
        candidates,
        tokens,
        logits,
        conf,
        next_offset,
        cuda_stream(base_logits),
    )
    return DraftStepResult(tokens, logits, conf, next_offset)
