"""``dspark.generate``: one-call speculative generation (a thin wrapper over the generator)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from dspark.generation.speculative import Scheduler, SpeculativeGenerator
from dspark.generation.stats import GenerationOutput
from dspark.models.base import Drafter
from dspark.sampling_params import SamplingParams

__all__ = ["generate"]


def generate(
    target: Any,
    drafter: Drafter,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    *,
    max_new_tokens: int | Sequence[int] | torch.Tensor | None = None,
    temperature: float | Sequence[float] | torch.Tensor = 1.0,
    top_k: int | Sequence[int] | torch.Tensor = 0,
    top_p: float | Sequence[float] | torch.Tensor = 1.0,
    stop_token_ids: Sequence[int] | Sequence[Sequence[int]] | None = None,
    pad_token_id: int | None = None,
    seed: int | None = None,
    scheduler: Scheduler | None = None,
    confidence_threshold: float | None = None,
    num_draft_tokens: int | None = None,
    tree_choices: Sequence[Sequence[int]] | None = None,
    streamer: Callable[[int, list[int]], None] | None = None,
    sampling: SamplingParams | Sequence[SamplingParams] | None = None,
) -> GenerationOutput:
    """Speculative generation with a drafter, lossless with respect to the target.

    Parameters
    ----------
    target : PreTrainedModel
        Hugging Face decoder-only causal LM.
    drafter : Drafter
        DSpark, DFlash or Eagle3 drafter built for ``target``.
    input_ids : Tensor (B, L) int
        Prompts; shorter prompts are padded (left or right) and marked by ``attention_mask``.
    attention_mask : Tensor (B, L), optional
        1 for real tokens, 0 for padding (default: all real).
    max_new_tokens : int or (B,) per request
    temperature : float or (B,)
        0 = greedy (then the output equals the target's greedy decoding). Default 1.0 (the
        reference evaluation protocol).
    top_k, top_p : int/float or (B,)
        Applied after temperature to the target (defining the output distribution) and to the
        drafts; 0 / 1.0 disable.
    stop_token_ids : list of int, or one list per request, optional
        Generation of a request ends after it emits one of these (default: the target's
        ``generation_config.eos_token_id``).
    pad_token_id : int, optional
        Fills ``sequences`` after a request's end (default: the target's pad/eos id, else 0).
    seed : int, optional
        Seeds drafting and verification (same seed, same output).
    scheduler, confidence_threshold, num_draft_tokens, tree_choices
        See :class:`SpeculativeGenerator`.
    streamer : callable(request_index, new_tokens), optional
        Called after every round with each request's newly accepted tokens.
    sampling : SamplingParams or list of SamplingParams (one per request), optional
        Instead of ``max_new_tokens``/``temperature``/``top_k``/``top_p``/``stop_token_ids``
        (``max_tokens`` required; ``min_p`` and per-request seeds are not supported here).

    Returns
    -------
    GenerationOutput
        ``.sequences (B, L + M)``, ``.num_generated (B,)``, ``.rounds`` (per-round statistics).

    Raises
    ------
    ValueError, TypeError
        Empty prompts, mismatched per-request arguments, out-of-range values, or a drafter built
        for another target.
    """
    gen = SpeculativeGenerator(
        target,
        drafter,
        scheduler=scheduler,
        confidence_threshold=confidence_threshold,
        num_draft_tokens=num_draft_tokens,
        tree_choices=tree_choices,
    )
    return gen.generate(
        input_ids,
        attention_mask,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        stop_token_ids=stop_token_ids,
        pad_token_id=pad_token_id,
        seed=seed,
        streamer=streamer,
        sampling=sampling,
    )
