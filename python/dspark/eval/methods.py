"""One decoding method run on one batch of prompts, for :func:`dspark.eval.evaluate`.

A method is target-only decoding (``transformers.generate``, or ``plain`` on the drafters' own
runner), a drafter (speculative generation) or a Hugging Face peer; :class:`_Runner` times one
batch of it and returns per-prompt payloads (JSON-ready, cached by the evaluation).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch

from dspark.eval.acceptance import RoundRecord, records_from_rounds
from dspark.eval.config import EvalConfig
from dspark.eval.peers import hf_generate_tokens
from dspark.generation import SpeculativeGenerator
from dspark.generation.inputs import default_token_ids
from dspark.generation.plain import plain_generate, resolve_engine
from dspark.models.base import Drafter
from dspark.models.config import target_fingerprint

__all__: list[str] = []  # internal to dspark.eval


@dataclass
class _Method:
    name: str
    kind: str  # "baseline", "plain", "drafter" or a peer name
    drafter: Drafter | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _sync(model: Any) -> None:
    """Wait for queued GPU work so wall-clock intervals cover it (no-op on CPU)."""
    dev = next(model.parameters()).device
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _pad_left(rows: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.int64)
    mask = torch.zeros(len(rows), width, dtype=torch.int64)
    for i, r in enumerate(rows):
        ids[i, width - len(r) :] = torch.tensor(r)
        mask[i, width - len(r) :] = 1
    return ids, mask


class _Runner:
    """Runs one method on one batch; returns per-prompt payloads (JSON-ready)."""

    def __init__(self, target: Any, cfg: EvalConfig) -> None:
        self.target, self.cfg = target, cfg
        self.stop_ids = default_token_ids(target, "eos_token_id")
        pads = default_token_ids(target, "pad_token_id") or self.stop_ids or [0]
        self.pad = pads[0]
        self.vocab = int(target.get_output_embeddings().weight.shape[0])
        self.engine = resolve_engine(target, cfg.engine)
        self._gens: dict[str, SpeculativeGenerator] = {}
        # Cached results belong to this target: its shape and a checksum of its LM head.
        self.identity = {
            **target_fingerprint(target.config),
            "name": str(getattr(target.config, "_name_or_path", "")),
            "lm_head": _weights_checksum(target.get_output_embeddings()),
        }

    def run(
        self, m: _Method, rows: list[list[int]], seed: int, max_new: int | None = None
    ) -> list[dict[str, Any]]:
        max_new = max_new or self.cfg.max_new_tokens
        ids, mask = _pad_left(rows, self.pad)
        _sync(self.target)
        t0 = time.perf_counter()
        records: list[list[RoundRecord]] | None = None
        phases = None
        if m.kind == "drafter":
            gen = self._gens.get(m.name)
            if gen is None:
                assert m.drafter is not None  # every "drafter" method carries one
                gen = SpeculativeGenerator(
                    self.target,
                    m.drafter,
                    num_draft_tokens=self.cfg.num_draft_tokens,
                    confidence_threshold=m.extra.get("confidence_threshold"),
                    # Without a confidence head, q(d_k) is the confidence score of the AUC.
                    record_draft_probs=not m.drafter.has_confidence,
                    engine=self.engine,
                )
                self._gens[m.name] = gen
            with torch.no_grad():
                out = gen.generate(
                    ids,
                    mask,
                    max_new_tokens=max_new,
                    temperature=self.cfg.temperature,
                    stop_token_ids=self.stop_ids,
                    pad_token_id=self.pad,
                    seed=seed,
                )
            counts = out.num_generated.tolist()
            outputs = _outputs(out, ids.shape[1])
            records = records_from_rounds(out.rounds, len(rows))
            # Drafting vs target-forward + verification time (the rest: prefill, bookkeeping).
            phases = (
                sum(r.draft_time for r in out.rounds),
                sum(r.verify_time for r in out.rounds),
            )
        elif m.kind == "plain":
            out = plain_generate(
                self.target,
                ids,
                mask,
                engine=self.engine,
                seed=seed,
                max_new_tokens=max_new,
                temperature=self.cfg.temperature,
                stop_token_ids=self.stop_ids,
                pad_token_id=self.pad,
            )
            counts = out.num_generated.tolist()
            outputs = _outputs(out, ids.shape[1])
        else:
            outputs = hf_generate_tokens(
                self.target,
                ids,
                mask,
                max_new_tokens=max_new,
                temperature=self.cfg.temperature,
                seed=seed,
                stop_ids=self.stop_ids,
                pad_token_id=self.pad,
                **m.extra,
            )
            counts = [len(o) for o in outputs]
        _sync(self.target)
        elapsed = time.perf_counter() - t0
        total = max(sum(counts), 1)
        payloads = []
        for i, n in enumerate(counts):
            p: dict[str, Any] = {
                "new_tokens": int(n),
                # The batch's wall time shared out by tokens: sums back to the batch time.
                "time": elapsed * n / total,
                "batch_time": elapsed,
                "batch_size": len(rows),
                "tokens": outputs[i],
            }
            if records is not None:
                p["rounds"] = [r.to_json() for r in records[i]]
            if phases is not None:
                p["draft_time"] = phases[0] * n / total
                p["verify_time"] = phases[1] * n / total
            payloads.append(p)
        return payloads


def _outputs(out: Any, prompt_width: int) -> list[list[int]]:
    """Each request's generated ids from a :class:`dspark.generation.GenerationOutput`."""
    seqs = out.sequences[:, prompt_width:].tolist()
    return [s[: int(n)] for s, n in zip(seqs, out.num_generated.tolist(), strict=True)]


def _weights_checksum(module: torch.nn.Module) -> str:
    """Cheap content checksum of the trainable weights (sum and sum of squares, float64)."""
    with torch.no_grad():
        s = sum(float(p.double().sum()) for p in module.parameters())
        q = sum(float(p.double().square().sum()) for p in module.parameters())
    return f"{s:.12e}/{q:.12e}"


def _model_identity(model: Any) -> str:
    """Name and parameter checksum of a peer's helper model (repr for non-modules)."""
    if not isinstance(model, torch.nn.Module):
        return repr(type(model))
    name = str(getattr(getattr(model, "config", None), "_name_or_path", ""))
    return f"{name}:{_weights_checksum(model)}"
