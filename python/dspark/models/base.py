"""Common drafter machinery: the frozen parts shared with the target, checkpoints, proposals.

Drafters hold the target's token embedding, LM head and rotary module by reference and never
register them as submodules: ``drafter.parameters()`` (what an optimizer sees) excludes them and
checkpoints do not duplicate them unless asked (``include_shared=True``).
"""

from __future__ import annotations

import os
from typing import Any, ClassVar, NamedTuple

import torch
from torch import nn

from dspark.models.config import DrafterConfig
from dspark.models.layers import init_weights, shared_target_parts
from dspark.utils.checkpoint import checkpoint_dir, verify_checkpoint
from dspark.utils.io import load_json

__all__ = ["Drafter", "Proposal"]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
_SHARED_KEYS = ("embed_tokens.weight", "lm_head.weight")


class Proposal(NamedTuple):
    """One round of drafts for B requests and G positions.

    Attributes
    ----------
    tokens : Tensor (B, G) int64
    draft_logits : Tensor (B, G, V) float32
        Processed logits each token was sampled from (the verifier's q).
    confidence : Tensor (B, G) float32 or None
        DSpark per-position confidence ``c_k`` (None for drafters without a confidence head).
    """

    tokens: torch.Tensor
    draft_logits: torch.Tensor
    confidence: torch.Tensor | None


class Drafter(nn.Module):
    """Base class of DSpark, DFlash and Eagle3 drafters built on a Hugging Face target."""

    kind: ClassVar[str] = ""
    registry: ClassVar[dict[str, type[Drafter]]] = {}
    #: Whether the drafter also drafts token trees (:meth:`propose_tree`); chain-only if False.
    supports_tree: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.kind:
            Drafter.registry[cls.kind] = cls

    def __init__(self, config: DrafterConfig, target: Any) -> None:
        super().__init__()
        config.check_target(target.config, what=f"{config.kind} config")
        self.config = config
        # A tuple is not registered by nn.Module: the target keeps ownership of these modules.
        self._shared = shared_target_parts(target)
        tcfg = getattr(target.config, "text_config", None) or target.config
        self._softcap = getattr(tcfg, "final_logit_softcapping", None)
        self.feature_dim = len(config.feature_layers) * int(tcfg.hidden_size)

    # --- shared frozen parts ---------------------------------------------------------------
    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """Token embedding of the target (Gemma's embedding module applies its own scale).

        Frozen: no gradient reaches the target's table, whatever its ``requires_grad``.
        """
        with torch.no_grad():
            # The drafter may run in another dtype than the target (e.g. a bf16 drafter).
            return self._shared[0](ids).to(next(self.parameters()).dtype)

    def compute_logits(self, h: torch.Tensor) -> torch.Tensor:
        """Target LM head (plus the target's final soft-capping, if it has one).

        Gradients flow to ``h`` but never into the (frozen, shared) head weights.
        """
        head = self._shared[1]
        if isinstance(head, nn.Linear):
            bias = None if head.bias is None else head.bias.detach()
            h = h.to(head.weight.dtype)
            logits = torch.nn.functional.linear(h, head.weight.detach(), bias)
        else:
            logits = head(h)
        if self._softcap:
            logits = torch.tanh(logits / self._softcap) * self._softcap
        return logits

    @property
    def rotary(self) -> nn.Module:
        return self._shared[2]

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def reset_parameters(self) -> None:
        """Fresh initialisation of every trainable weight (norms stay at identity)."""
        init_weights(self)

    @property
    def has_confidence(self) -> bool:
        """Whether proposals carry per-position confidences (a DSpark confidence head)."""
        return getattr(self, "confidence", None) is not None

    def is_bound_to(self, target: Any) -> bool:
        """Whether the drafter uses ``target``'s own embedding module (see :meth:`attach`)."""
        return self._shared[0] is target.get_input_embeddings()

    def propose_tree(self, state: Any, anchor: torch.Tensor, tree: Any) -> torch.Tensor:
        """Draft the nodes of a static token tree (drafters with ``supports_tree`` only)."""
        raise NotImplementedError(f"a {self.kind} drafter drafts chains only (supports_tree)")

    def attach(self, target: Any) -> None:
        """Re-bind to ``target`` (after checking it is the target this drafter was built for)."""
        self.config.check_target(target.config, what="drafter")
        self._shared = shared_target_parts(target)

    # --- checkpoints ----------------------------------------------------------------------
    def save_pretrained(
        self, path: str | os.PathLike[str], *, include_shared: bool = False
    ) -> None:
        """Write ``model.safetensors``, ``config.json`` and ``checksums.json`` as one directory.

        The directory is built beside ``path`` and swapped in with one rename
        (:func:`dspark.utils.checkpoint.checkpoint_dir`), so a kill at any point leaves the old
        or the new checkpoint loadable; other files already in ``path`` are kept.

        Parameters
        ----------
        path : path-like
            Directory (created if missing).
        include_shared : bool
            Also store the frozen embedding and LM head (for runtimes that want a standalone
            file); by default they are taken from the target when loading.
        """
        from safetensors.torch import save_file  # optional dependency: imported on use

        tensors = {k: v.detach().contiguous() for k, v in self.state_dict().items()}
        if include_shared:
            # Clones: tied targets (one tensor for both) must still give two safetensors entries.
            tensors["embed_tokens.weight"] = self._shared[0].weight.detach().clone()
            tensors["lm_head.weight"] = self._shared[1].weight.detach().clone()
        with checkpoint_dir(path, keep_others=True) as out:
            save_file(tensors, str(out / WEIGHTS_NAME), metadata={"format": "pt"})
            (out / CONFIG_NAME).write_text(self.config.to_json())

    @classmethod
    def from_pretrained(
        cls, path: str | os.PathLike[str], target: Any, *, verify: bool = True, **kwargs: Any
    ) -> Drafter:
        """Load a drafter saved by :meth:`save_pretrained` and bind it to ``target``.

        ``verify`` checks every file against ``checksums.json`` first (when the checkpoint has
        one; pass False to skip the read for speed).

        Raises
        ------
        FileNotFoundError
            ``path`` lacks ``config.json`` or ``model.safetensors``.
        ValueError
            A file fails its checksum (corrupted; the message names it) or ``config.json`` is
            not valid JSON.
            The checkpoint was built for another target (vocabulary, hidden size, layer count,
            feature layers), is of another drafter kind than ``cls``, or its tensors do not match
            the configuration.
        """
        from safetensors.torch import load_file  # optional dependency: imported on use

        src = verify_checkpoint(path, (CONFIG_NAME, WEIGHTS_NAME), verify=verify)
        try:
            config = DrafterConfig.from_dict(load_json(src / CONFIG_NAME, required=("kind",)))
            klass = Drafter.registry[config.kind]
        except (TypeError, KeyError) as e:
            raise ValueError(f"path: {src / CONFIG_NAME} is incomplete or invalid ({e})") from None
        if cls is not Drafter and klass is not cls:
            raise ValueError(f"path: checkpoint holds a {config.kind!r} drafter, not {cls.kind!r}")
        config.check_target(target.config, what=f"checkpoint {src}")
        tensors = load_file(str(src / WEIGHTS_NAME))
        shared = {k: tensors.pop(k) for k in _SHARED_KEYS if k in tensors}
        drafter = klass(config, target, **kwargs)
        for key, mod in zip(_SHARED_KEYS, drafter._shared[:2], strict=False):
            if key in shared and shared[key].shape != mod.weight.shape:
                raise ValueError(
                    f"target: checkpoint {key} has shape {tuple(shared[key].shape)}, the "
                    f"target's is {tuple(mod.weight.shape)}"
                )
        own = drafter.state_dict()
        missing, unexpected = sorted(set(own) - set(tensors)), sorted(set(tensors) - set(own))
        if missing or unexpected:
            raise ValueError(
                f"path: checkpoint tensors do not match the config: missing {missing[:5]}, "
                f"unexpected {unexpected[:5]}"
            )
        for k, t in tensors.items():
            if t.shape != own[k].shape:
                raise ValueError(
                    f"path: tensor {k} has shape {tuple(t.shape)}, config expects "
                    f"{tuple(own[k].shape)}"
                )
        drafter.load_state_dict(tensors)
        ref = drafter._shared[0].weight
        return drafter.to(device=ref.device, dtype=ref.dtype if ref.is_floating_point() else None)

    # --- inference interface (implemented by subclasses) ------------------------------------
    def new_state(self, batch: int) -> Any:
        """Fresh per-batch drafting state (caches)."""
        raise NotImplementedError

    def commit(
        self, state: Any, features: torch.Tensor, next_tokens: torch.Tensor, counts: torch.Tensor
    ) -> None:
        """Append committed context: target ``features [B, n, F]`` of the next ``counts[b]``
        positions of each request and the token following each of them, ``next_tokens [B, n]``
        (the last one is the new anchor)."""
        raise NotImplementedError

    def propose(
        self,
        state: Any,
        anchor: torch.Tensor,
        *,
        temperature: torch.Tensor,
        top_k: torch.Tensor | None = None,
        top_p: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        num_tokens: int | None = None,
    ) -> Proposal:
        """Draft ``num_tokens`` (default ``block_size``) tokens after ``anchor [B]``."""
        raise NotImplementedError

    def select(self, state: Any, indices: torch.Tensor) -> None:
        """Keep only the requests ``indices`` of ``state``."""
        state.cache.select(indices)

    def join(self, state: Any, other: Any) -> None:
        """Append the requests of ``other`` (a state of this drafter) after ``state``'s."""
        state.cache.join(other.cache)
