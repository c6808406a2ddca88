"""Per-request sampling parameters: one object instead of a list of keywords at every layer.

A :class:`SamplingParams` holds one request's parameters (or, with per-request tensors, a whole
batch's); :meth:`SamplingParams.batch` turns a list of them (or one, broadcast) into the batched
tensors :func:`dspark.verify_batch` and :func:`dspark.draft_step` take (``sampling=``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import torch

from dspark._checks import as_request_tensor

__all__ = ["SamplingBatch", "SamplingParams", "apply_sampling"]

Scalar = int | float


class SamplingBatch(NamedTuple):
    """Batched sampling tensors for R requests (see :meth:`SamplingParams.batch`).

    Attributes
    ----------
    temperature, top_p, min_p : Tensor (R,) float32
    top_k : Tensor (R,) int32
    seed : Tensor (R,) int64 or None
        None when no request fixes its seed (the op then draws seeds from its generator).
    offset : Tensor (R,) int64
    max_tokens : Tensor (R,) int64 or None
    stop : list of frozenset of int
        Stop token ids per request.
    """

    temperature: torch.Tensor
    top_k: torch.Tensor
    top_p: torch.Tensor
    min_p: torch.Tensor
    seed: torch.Tensor | None
    offset: torch.Tensor
    max_tokens: torch.Tensor | None
    stop: list[frozenset[int]]


@dataclass
class SamplingParams:
    """Sampling parameters of one request, or of a batch when fields are (R,) tensors.

    Parameters
    ----------
    temperature : float or Tensor (R,)
        0 means greedy.
    top_k : int or Tensor (R,)
        0 disables.
    top_p : float or Tensor (R,)
        1.0 disables.
    min_p : float or Tensor (R,)
        0.0 disables; 1.0 keeps the argmax and its ties.
    seed : int or Tensor (R,), optional
        Philox key (None: drawn from the op's generator).
    offset : int or Tensor (R,)
        Philox counter offset.
    max_tokens : int or Tensor (R,), optional
        Tokens to generate (used by generation loops, not by the ops).
    stop : sequence of int
        Stop token ids (used by generation loops, not by the ops).

    Examples
    --------
    >>> import torch, dspark
    >>> b = dspark.SamplingParams.batch([dspark.SamplingParams(temperature=0.0),
    ...                                   dspark.SamplingParams(top_k=5, seed=7)])
    >>> b.temperature.tolist(), b.top_k.tolist(), b.seed.tolist()[1]
    ([0.0, 1.0], [0, 5], 7)
    """

    temperature: Scalar | torch.Tensor = 1.0
    top_k: Scalar | torch.Tensor = 0
    top_p: Scalar | torch.Tensor = 1.0
    min_p: Scalar | torch.Tensor = 0.0
    seed: Scalar | torch.Tensor | None = None
    offset: Scalar | torch.Tensor = 0
    max_tokens: Scalar | torch.Tensor | None = None
    stop: Sequence[int] = field(default_factory=tuple)

    @staticmethod
    def batch(
        params: SamplingParams | Sequence[SamplingParams],
        num_requests: int | None = None,
        device: torch.device | str = "cpu",
        generator: torch.Generator | None = None,
    ) -> SamplingBatch:
        """Batched tensors for R requests: one SamplingParams per request, or one broadcast.

        Parameters
        ----------
        params : SamplingParams or sequence of SamplingParams
            A sequence gives R = its length (its fields must be scalars); a single object is
            broadcast to ``num_requests`` (its fields may be (R,) tensors).
        num_requests : int, optional
            R for a single object (default: the length of its tensor fields, else 1).
        device : torch.device or str
        generator : torch.Generator, optional
            Source of the seeds of requests without one (when some request has a seed).

        Raises
        ------
        TypeError, ValueError
            A field of the wrong type, shape or value; each message names the field.
        """
        dev = torch.device(device)
        if isinstance(params, SamplingParams):
            r = num_requests if num_requests is not None else params._batch_size()
            return params._broadcast(r, dev)
        items = list(params)
        if not items or not all(isinstance(p, SamplingParams) for p in items):
            raise TypeError("params: expected a SamplingParams or a non-empty list of them")
        if num_requests is not None and num_requests != len(items):
            raise ValueError(
                f"num_requests: expected {len(items)} (one per SamplingParams), got {num_requests}"
            )
        rows = [p._broadcast(1, torch.device("cpu")) for p in items]

        def cat(name: str) -> torch.Tensor:
            return torch.cat([getattr(b, name) for b in rows]).to(dev)

        seed = None
        if any(b.seed is not None for b in rows):
            drawn = torch.randint(0, 2**62, (len(rows),), generator=generator, dtype=torch.int64)
            seed = torch.stack(
                [b.seed[0] if b.seed is not None else drawn[i] for i, b in enumerate(rows)]
            ).to(dev)
        max_tokens = None
        if any(b.max_tokens is not None for b in rows):
            if not all(b.max_tokens is not None for b in rows):
                raise ValueError("max_tokens: set it for every request or for none")
            max_tokens = cat("max_tokens")
        return SamplingBatch(
            cat("temperature"),
            cat("top_k"),
            cat("top_p"),
            cat("min_p"),
            seed,
            cat("offset"),
            max_tokens,
            [b.stop[0] for b in rows],
        )

    def _batch_size(self) -> int:
        sizes = {
            int(v.shape[0])
            for v in (self.temperature, self.top_k, self.top_p, self.min_p, self.seed)
            if isinstance(v, torch.Tensor) and v.dim() == 1
        }
        if len(sizes) > 1:
            raise ValueError(f"SamplingParams: per-request tensors of different lengths {sizes}")
        return sizes.pop() if sizes else 1

    def _broadcast(self, r: int, dev: torch.device) -> SamplingBatch:
        def req(name: str, dtype: torch.dtype) -> torch.Tensor | None:
            return as_request_tensor(name, getattr(self, name), r, dtype, dev)

        stop = frozenset(int(t) for t in self.stop)
        return SamplingBatch(
            req("temperature", torch.float32),  # type: ignore[arg-type]
            req("top_k", torch.int32),  # type: ignore[arg-type]
            req("top_p", torch.float32),  # type: ignore[arg-type]
            req("min_p", torch.float32),  # type: ignore[arg-type]
            req("seed", torch.int64),
            req("offset", torch.int64),  # type: ignore[arg-type]
            req("max_tokens", torch.int64),
            [stop] * r,
        )


def apply_sampling(
    sampling: SamplingParams | Sequence[SamplingParams],
    num_requests: int,
    device: torch.device,
    generator: torch.Generator | None,
    **explicit: object,
) -> SamplingBatch:
    """The ops' ``sampling=`` keyword: batch it, refusing explicit keywords it would override."""
    given = [name for name, v in explicit.items() if v is not None]
    if given:
        raise ValueError(f"sampling: pass either sampling= or {', '.join(given)}, not both")
    return SamplingParams.batch(sampling, num_requests, device, generator)
