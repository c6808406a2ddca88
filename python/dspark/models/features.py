"""Target features: the raw residual-stream outputs of chosen target decoder layers."""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["target_features"]


def target_features(
    hidden_states: Sequence[torch.Tensor], feature_layers: Sequence[int]
) -> torch.Tensor:
    """Concatenate the outputs of ``feature_layers`` from Hugging Face ``hidden_states``.

    Parameters
    ----------
    hidden_states : sequence of Tensor (B, S, d)
        ``output_hidden_states=True`` output: entry 0 is the embedding output, entry ``i + 1`` the
        output of decoder layer ``i``.
    feature_layers : sequence of int
        0-based layer ids; -1 selects the embedding output.

    Returns
    -------
    Tensor (B, S, m * d)
    """
    n = len(hidden_states) - 1
    for i in feature_layers:
        if not -1 <= i < n - 1:
            raise ValueError(f"feature_layers: expected ids in [-1, {n - 2}], got {i}")
    return torch.cat([hidden_states[i + 1] for i in feature_layers], dim=-1)
