"""The model runner: packs one step of many requests and runs a Hugging Face LM over pages.

A step is a list of :class:`StepRequest` (a request id and its new tokens, optionally a tree of
them). :meth:`ModelRunner.run` appends every request's tokens to its pages, runs the model once
over the packed ``[1, T]`` batch with :mod:`dspark.engine.attention`, and returns logits only for
the rows asked for plus the drafter's feature layers for every new row (captured in the forward
by hooks installed once, not per call). The caller then keeps what verification accepted with
:meth:`PagedKVCache.truncate` (chains) or :meth:`PagedKVCache.keep` (tree paths).
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

from dspark.engine.attention import ATTN_NAME, StepCache, StepLayout, register
from dspark.engine.forward import DIRECT_FAMILIES, DirectForward
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


def _rows(which: str | torch.Tensor, n: int) -> list[int] | torch.Tensor:
    """Row offsets (within a request's ``n`` new tokens) that need logits."""
    if isinstance(which, torch.Tensor):
        r = which.to(device="cpu", dtype=torch.int64).reshape(-1)
        if r.numel() and not (int(r.min()) >= 0 and int(r.max()) < n):
            raise ValueError(f"logits: expected row offsets in [0, {n}), got {r.tolist()}")
        return r
    if which == "last":
        return [n - 1] if n else []
    if which == "all":
        return list(range(n))
    if which == "none":
        return []
    raise ValueError(f"logits: expected 'last', 'all', 'none' or a tensor of rows, got {which!r}")


def _depths(parents: list[int]) -> list[int]:
    """Tree depth of each node from its local parent (-1 = the prefix), validating the order."""
    depth: list[int] = []
    for i, p in enumerate(parents):
        if not -1 <= p < i:
            raise ValueError(f"parents: expected -1 <= parents[{i}] < {i}, got {p}")
        depth.append(0 if p < 0 else depth[p] + 1)
    return depth


def _set_attn(cfg: Any, name: Any) -> None:
    """Set ``cfg._attn_implementation``. A config without sub-configs keeps it in one instance
    attribute, written directly: the property setter goes through huggingface_hub's validating
    ``__setattr__`` (~8 us, twice per step)."""
    if not getattr(cfg, "sub_configs", None) and "_attn_implementation_internal" in vars(cfg):
        vars(cfg)["_attn_implementation_internal"] = name
    else:
        cfg._attn_implementation = name


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
    direct : bool, optional
        Run the model's own modules in dspark's loop (:mod:`dspark.engine.forward`: no
        transformers wrappers, no masks, a RoPE table, features read in the loop) instead of
        ``model(...)``. Default: whenever the model's family supports it; ``True`` raises if it
        does not; ``False`` always calls ``model(...)`` (features then come from forward hooks).
    """

    def __init__(
        self,
        model: Any,
        *,
        num_pages: int,
        page_size: int = 16,
        feature_layers: Sequence[int] = (),
        direct: bool | None = None,
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
        n_layers = cfg.num_hidden_layers
        for i in self.feature_layers:
            if not -1 <= i < n_layers - 1:
                raise ValueError(f"feature_layers: expected ids in [-1, {n_layers - 2}], got {i}")
        self.direct = None if direct is False else DirectForward.build(model)
        if direct and self.direct is None:
            raise ValueError(
                f"direct: the direct forward supports the families {sorted(DIRECT_FAMILIES)}, "
                f"got model_type {getattr(model.config, 'model_type', None)!r}"
            )
        self._captured: dict[int, torch.Tensor] = {}
        self._capturing = False
        self._handles = self._install_hooks() if self.direct is None else []
        self._table_key: tuple[Any, ...] | None = None
        self._table: tuple[torch.Tensor, torch.Tensor] | None = None

    # --- feature capture on the model(...) path (hooks installed once; inert outside run()) --
    def _install_hooks(self) -> list[Any]:
        if not self.feature_layers:
            return []
        base = getattr(self.model, "model", None) or self.model.get_decoder()
        layers = base.layers
        handles = []
        for i in self.feature_layers:
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
    def _block_table(self, reqs: list[Hashable]) -> tuple[torch.Tensor, torch.Tensor]:
        """``[R, W]`` int32 page tables on the device and their flat int64 copy (host), reused
        while no page table changes (decode steps cross a page only every ``page_size``)."""
        key = (self.cache.version, *reqs)
        if key != self._table_key or self._table is None:
            bt = self.cache.block_table(reqs)
            self._table, self._table_key = (bt, bt.view(-1).to("cpu", torch.int64)), key
        return self._table

    def _check(self, step: Sequence[StepRequest]) -> tuple[list[int], Any, list[Any]]:
        """Token counts, tree layout (parents and depth-minus-offset per token, or None) and
        logit rows of every request, validated before anything is appended."""
        ns, tree, rows = [], None, []
        for s in step:
            if s.tokens.dim() != 1:
                shape = tuple(s.tokens.shape)
                raise ValueError(f"tokens: expected a 1-D tensor, got shape {shape}")
            ns.append(n := int(s.tokens.shape[0]))
            rows.append(_rows(s.logits, n))
        if len({s.req for s in step}) != len(step):
            raise ValueError(f"step: expected distinct request ids, got {[s.req for s in step]}")
        if any(s.parents is not None for s in step):
            par: list[int] = []
            delta: list[int] = []  # tree depth minus chain offset
            for s, n in zip(step, ns, strict=True):
                if s.parents is None:
                    par += range(-1, n - 1)
                    delta += [0] * n
                    continue
                p = [int(x) for x in s.parents.reshape(-1).tolist()]
                if len(p) != n:
                    raise ValueError(f"parents: expected {n} entries (one per token), got {len(p)}")
                par += p
                delta += [d - i for i, d in enumerate(_depths(p))]
            tree = (par, delta)
        return ns, tree, rows

    def _layout(self, step: Sequence[StepRequest]) -> tuple[StepLayout, torch.Tensor | None, Any]:
        """Append every request's tokens and pack the step: Python work is O(1) per request,
        token-level positions and slots are a fixed number of tensor ops over the whole step."""
        cache, dev, ps = self.cache, self.device, self.cache.page_size
        ns, tree, row_parts = self._check(step)
        reqs = [s.req for s in step]
        for r in reqs:
            if r not in cache:
                cache.add(r)
        new_len = {r: cache.length(r) + n for r, n in zip(reqs, ns, strict=True)}
        if not cache.can_grow(new_len):
            raise OutOfPages(
                f"this step needs more than the {cache.num_free_pages} free pages of "
                f"{cache.num_pages}"
            )
        starts = [cache.extend(r, n) for r, n in zip(reqs, ns, strict=True)]
        num_req, num_tok = len(step), sum(ns)
        qo = list(itertools.accumulate(ns, initial=0))
        kv = [a + n for a, n in zip(starts, ns, strict=True)]
        bt, flat = self._block_table(reqs)
        width = bt.shape[1]
        # One host tensor for every per-request integer: token t of request r sits at slot
        # starts[r] + (t - qo[r]) of page-table row r.
        offs = [a - q for a, q in zip(starts, qo, strict=False)]
        buf = torch.tensor([*offs, *range(0, num_req * width, width), *qo, *kv, *ns])
        meta = buf[: 2 * num_req].view(2, num_req).T
        if num_tok != num_req:  # else one token per request (decode)
            meta = meta.repeat_interleave(buf[4 * num_req + 1 :], dim=0, output_size=num_tok)
        slot_pos = torch.arange(num_tok) + meta[:, 0]
        slots = flat[meta[:, 1] + slot_pos // ps] * ps + slot_pos % ps
        parents, positions = None, slot_pos
        if tree is not None:
            parents = torch.tensor(tree[0], dtype=torch.int32, device=dev)
            positions = slot_pos + torch.tensor(tree[1])
        idx = buf[2 * num_req : 4 * num_req + 1].to(device=dev, dtype=torch.int32)
        toks = [s.tokens for s in step]
        if any(t.device != toks[0].device for t in toks):
            toks = [t.cpu() for t in toks]
        lay = StepLayout(
            input_ids=torch.cat(toks).to(device=dev, dtype=torch.int64),
            positions=positions.to(dev),
            slot_mapping=slots.to(dev),
            qo_indptr=idx[: num_req + 1],
            kv_len=idx[num_req + 1 :],
            block_table=bt,
            parents=parents,
            max_qo_len=max(ns, default=0),
            max_kv_len=max(kv, default=0),
            qo_indptr_host=tuple(qo),
        )
        rows, rows_ptr = self._logit_rows(step, row_parts, qo)
        return lay, rows, rows_ptr

    def _logit_rows(
        self, step: Sequence[StepRequest], parts: list[Any], qo: list[int]
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Packed rows that need logits (None = every row) and their ``[R + 1]`` offsets."""
        if all(isinstance(s.logits, str) and s.logits == "all" for s in step):
            return None, torch.tensor(qo, dtype=torch.int64)
        counts = [len(r) for r in parts]
        if all(isinstance(r, list) for r in parts):
            flat = [q + i for q, r in zip(qo, parts, strict=False) for i in r]
            rows = torch.tensor(flat, dtype=torch.int64)
        else:
            rows = torch.cat(
                [torch.as_tensor(r, dtype=torch.int64) + q for q, r in zip(qo, parts, strict=False)]
            )
        ptr = torch.tensor(list(itertools.accumulate(counts, initial=0)), dtype=torch.int64)
        return rows.to(self.device), ptr

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
        if prev != ATTN_NAME:
            _set_attn(cfg, ATTN_NAME)
        sc = StepCache(self.cache, lay)
        try:
            if self.direct is not None:
                logits, parts = self.direct(
                    lay.input_ids, lay.positions, sc, rows, self.feature_layers, lay.max_kv_len - 1
                )
            else:
                logits, parts = self._hf_forward(lay, sc, rows)
        finally:
            if prev != ATTN_NAME:
                _set_attn(cfg, prev)
        feats = torch.cat(parts, dim=-1) if parts else None
        return RunnerOutput(logits, rows_ptr, feats, lay)

    def _hf_forward(
        self, lay: StepLayout, sc: StepCache, rows: torch.Tensor | None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The step through ``model(...)`` (features from the forward hooks)."""
        self._capturing, self._captured = bool(self.feature_layers), {}
        try:
            out = self.model(
                input_ids=lay.input_ids[None],
                position_ids=lay.positions[None],
                use_cache=True,
                logits_to_keep=0 if rows is None else rows,
                dspark_step=sc,
                **cache_kwargs(self.model, sc),
            )
            parts = [self._captured[i][0] for i in self.feature_layers]
        finally:
            self._capturing, self._captured = False, {}
        return out.logits[0], parts
