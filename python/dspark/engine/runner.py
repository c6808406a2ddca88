"""The model runner: packs one step of many requests and runs a Hugging Face LM over pages.

A step is a list of :class:`StepRequest` (a request id and its new tokens, optionally a tree of
them). :meth:`ModelRunner.run` appends every request's tokens to its pages, runs the model once
over the packed ``[1, T]`` batch with :mod:`dspark.engine.attention`, and returns logits only for
the rows asked for plus the drafter's feature layers for every new row (captured in the forward
by hooks installed once, not per call). The caller then keeps what verification accepted with
:meth:`PagedKVCache.truncate` (chains) or :meth:`PagedKVCache.keep` (tree paths).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

from dspark.engine.attention import StepCache, StepLayout, register
from dspark.engine.paged_cache import OutOfPages, PagedKVCache
from dspark.integrations.hf_compat import cache_kwargs

__all__ = ["ModelRunner", "RunnerOutput", "StepRequest", "supported_head_dim"]

_SUPPORTED_HEAD_DIMS = (64, 128, 256)  # dspark.verify_attention's kernels


@dataclass
class StepRequest:
    """One request's part of a step.

    Attributes
    ----------
    req : hashable
        The request id (a key of the runner's cache; added on first use).
    tokens : Tensor (n,) int
        New tokens, appended after the request's committed slots.
    parents : Tensor (n,) int, optional
        Local tree parent of each new token (-1 = the committed prefix only); None = a chain.
        Token ``i``'s position is the prefix length plus its depth.
    logits : "last", "all", "none" or Tensor of row indices
        Which of the new rows need logits.
    """

    req: Hashable
    tokens: torch.Tensor
    parents: torch.Tensor | None = None
    logits: str | torch.Tensor = "last"


class RunnerOutput(NamedTuple):
    """Logits ``[N, V]`` of the requested rows (request order, then row order), their row
    offsets ``logits_indptr [R + 1]``, features ``[T, F]`` of every new row (or None) and the
    step's ``layout``."""

    logits: torch.Tensor
    logits_indptr: torch.Tensor
    features: torch.Tensor | None
    layout: StepLayout


def _text_config(model: Any) -> Any:
    cfg = model.config
    return getattr(cfg, "text_config", None) or cfg


def _head_dim(cfg: Any) -> int:
    return int(getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads)


def supported_head_dim(model: Any) -> bool:
    """Whether ``model``'s attention head dim has a :func:`dspark.verify_attention` kernel."""
    return _head_dim(_text_config(model)) in _SUPPORTED_HEAD_DIMS


def _rows(which: str | torch.Tensor, n: int) -> torch.Tensor:
    """Row offsets (within a request's new tokens) that need logits."""
    if isinstance(which, torch.Tensor):
        r = which.to(torch.int64).cpu()
        if r.numel() and not (int(r.min()) >= 0 and int(r.max()) < n):
            raise ValueError(f"logits: expected row offsets in [0, {n}), got {r.tolist()}")
        return r
    if which == "last":
        return torch.arange(max(n - 1, 0), n)
    if which == "all":
        return torch.arange(n)
    if which == "none":
        return torch.zeros(0, dtype=torch.int64)
    raise ValueError(f"logits: expected 'last', 'all', 'none' or a tensor of rows, got {which!r}")


def _depths(parents: torch.Tensor) -> torch.Tensor:
    depth = torch.zeros(parents.shape[0], dtype=torch.int64)
    for i, p in enumerate(parents.tolist()):
        if not -1 <= p < i:
            raise ValueError(f"parents: expected -1 <= parents[{i}] < {i}, got {p}")
        depth[i] = 0 if p < 0 else depth[p] + 1
    return depth


class ModelRunner:
    """A Hugging Face decoder-only LM run over dspark's paged KV cache.

    Parameters
    ----------
    model : PreTrainedModel
        Llama/Qwen2/Qwen3/Gemma-style causal LM whose attention dispatches through transformers'
        ``AttentionInterface``. Head dim must be 64, 128 or 256.
    num_pages : int
        Pages in the pool (shared by all requests).
    page_size : int
        Slots per page.
    feature_layers : sequence of int
        Decoder layers whose outputs to return as features (-1 = the embedding output), in
        :func:`dspark.models.target_features`' order and numbering.
    """

    def __init__(
        self,
        model: Any,
        *,
        num_pages: int,
        page_size: int = 16,
        feature_layers: Sequence[int] = (),
    ) -> None:
        cfg = _text_config(model)
        head_dim = _head_dim(cfg)
        if head_dim not in _SUPPORTED_HEAD_DIMS:
            raise ValueError(
                f"model: the paged runner needs a head dim in {_SUPPORTED_HEAD_DIMS}, "
                f"got {head_dim}"
            )
        p = next(model.parameters())
        self.model, self.config = model, cfg
        self.device = p.device
        self.cache = PagedKVCache(
            cfg.num_hidden_layers,
            cfg.num_key_value_heads,
            head_dim,
            num_pages=num_pages,
            page_size=page_size,
            dtype=p.dtype,
            device=p.device,
        )
        register()
        self.feature_layers = list(feature_layers)
        self._captured: dict[int, torch.Tensor] = {}
        self._capturing = False
        self._handles = self._install_hooks()

    # --- feature capture (hooks installed once; inert outside run()) ------------------------
    def _install_hooks(self) -> list[Any]:
        if not self.feature_layers:
            return []
        base = getattr(self.model, "model", None) or self.model.get_decoder()
        layers = base.layers
        handles = []
        for i in self.feature_layers:
            if not -1 <= i < len(layers) - 1:
                raise ValueError(
                    f"feature_layers: expected ids in [-1, {len(layers) - 2}], got {i}"
                )
            mod = self.model.get_input_embeddings() if i == -1 else layers[i]
            handles.append(mod.register_forward_hook(self._hook(i)))
        return handles

    def _hook(self, layer: int):
        def fn(module: Any, args: Any, output: Any) -> None:
            if self._capturing:
                self._captured[layer] = output[0] if isinstance(output, tuple) else output

        return fn

    def close(self) -> None:
        """Remove the feature hooks from the model."""
        for h in self._handles:
            h.remove()
        self._handles = []

    # --- one step -----------------------------------------------------------------------------
    def _layout(self, step: Sequence[StepRequest]) -> tuple[StepLayout, torch.Tensor, torch.Tensor]:
        cache, dev = self.cache, self.device
        new_len = {}
        for s in step:
            if s.req not in cache:
                cache.add(s.req)
            new_len[s.req] = cache.length(s.req) + int(s.tokens.shape[0])
        if not cache.can_grow(new_len):
            raise OutOfPages(
                f"this step needs more than the {cache.num_free_pages} free pages of "
                f"{cache.num_pages}"
            )
        ids, pos, slots, tree = [], [], [], []
        qo, kv, rows, rows_ptr = [0], [], [], [0]
        for s in step:
            n = int(s.tokens.shape[0])
            start = cache.extend(s.req, n)
            if s.parents is None:
                depth = torch.arange(n, dtype=torch.int64)
                tree.append(torch.arange(-1, n - 1, dtype=torch.int32))
            else:
                depth = _depths(s.parents.cpu())
                tree.append(s.parents.to(torch.int32).cpu())
            ids.append(s.tokens.to(torch.int64).cpu())
            pos.append(start + depth)
            slots.append(cache.slots(s.req, torch.arange(start, start + n)).cpu())
            qo.append(qo[-1] + n)
            kv.append(start + n)
            if isinstance(s.logits, str):
                if s.logits not in ("last", "all", "none"):
                    raise ValueError(
                        f"logits: expected 'last', 'all', 'none' or rows, got {s.logits!r}"
                    )
                r = {
                    "last": torch.arange(n - 1, n) if n else torch.zeros(0, dtype=torch.int64),
                    "all": torch.arange(n),
                    "none": torch.zeros(0, dtype=torch.int64),
                }[s.logits]
            else:
                r = s.logits.to(torch.int64).cpu()
            rows.append(r + qo[-2])
            rows_ptr.append(rows_ptr[-1] + int(r.shape[0]))
        any_tree = any(s.parents is not None for s in step)
        lay = StepLayout(
            input_ids=torch.cat(ids).to(dev),
            positions=torch.cat(pos).to(dev),
            slot_mapping=torch.cat(slots).to(dev),
            qo_indptr=torch.tensor(qo, dtype=torch.int32, device=dev),
            kv_len=torch.tensor(kv, dtype=torch.int32, device=dev),
            block_table=cache.block_table([s.req for s in step]),
            parents=torch.cat(tree).to(dev) if any_tree else None,
            max_qo_len=max((qo[i + 1] - qo[i] for i in range(len(step))), default=0),
            max_kv_len=max(kv, default=0),
        )
        return lay, torch.cat(rows).to(dev), torch.tensor(rows_ptr, dtype=torch.int64)

    @torch.no_grad()
    def run(self, step: Sequence[StepRequest]) -> RunnerOutput:
        """Append and run every request's new tokens in one packed forward.

        Raises
        ------
        OutOfPages
            The step does not fit in the free pages (nothing was appended).
        """
        lay, rows, rows_ptr = self._layout(step)
        cfg = self.model.config
        prev = cfg._attn_implementation
        cfg._attn_implementation = register()
        self._capturing, self._captured = bool(self.feature_layers), {}
        try:
            sc = StepCache(self.cache, lay)
            out = self.model(
                input_ids=lay.input_ids[None],
                position_ids=lay.positions[None],
                use_cache=True,
                logits_to_keep=rows,
                dspark_step=sc,
                **cache_kwargs(self.model, sc),
            )
        finally:
            cfg._attn_implementation = prev
            self._capturing = False
        feats = None
        if self.feature_layers:
            feats = torch.cat([self._captured[i][0] for i in self.feature_layers], dim=-1)
            self._captured = {}
        return RunnerOutput(out.logits[0], rows_ptr, feats, lay)
