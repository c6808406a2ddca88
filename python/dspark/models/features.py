"""Target features: the raw residual-stream outputs of chosen target decoder layers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

__all__ = ["FeatureCapture", "target_features"]


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


class FeatureCapture:
    """Capture feature-layer outputs with forward hooks during one target call.

    Cheaper than ``output_hidden_states=True``, which keeps every layer's output alive. Layer
    ``i`` is hooked on ``target.model.layers[i]`` (its output is the raw residual stream, exactly
    ``hidden_states[i + 1]``); -1 hooks the input embedding (``hidden_states[0]``).

    Examples
    --------
    >>> with FeatureCapture(target, [1, 9, 17]) as cap:   # doctest: +SKIP
    ...     target(ids)
    >>> cap.features()                                    # doctest: +SKIP
    """

    def __init__(self, target: Any, feature_layers: Sequence[int]) -> None:  # a HF causal LM
        base = getattr(target, "model", None) or target.get_decoder()
        layers = getattr(base, "layers", None)
        if layers is None:
            raise TypeError(f"target: {type(target).__name__} has no decoder `layers` to hook")
        for i in feature_layers:
            if not -1 <= i < len(layers) - 1:
                raise ValueError(
                    f"feature_layers: expected ids in [-1, {len(layers) - 2}], got {i}"
                )
        self.order = list(feature_layers)
        self.modules = {
            i: target.get_input_embeddings() if i == -1 else layers[i] for i in self.order
        }
        self.outputs: dict[int, torch.Tensor] = {}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def _hook(self, layer: int):
        def fn(module, args, output):
            self.outputs[layer] = output[0] if isinstance(output, tuple) else output

        return fn

    def __enter__(self) -> FeatureCapture:
        self.outputs.clear()
        self._handles = [m.register_forward_hook(self._hook(i)) for i, m in self.modules.items()]
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def features(self) -> torch.Tensor:
        """``[B, S, m * d]`` in ``feature_layers`` order."""
        missing = [i for i in self.order if i not in self.outputs]
        if missing:
            raise RuntimeError(f"FeatureCapture: layers {missing} did not run")
        return torch.cat([self.outputs[i] for i in self.order], dim=-1)
