"""Growing a trained zoo target deeper without changing what it computes (depth up-scaling).

A deeper target is what makes speculation pay (a decode step must cost several drafter
forwards), but training one from scratch costs CPU-hours that the trained shallow target already
spent. :func:`grow_layers` turns an ``L``-layer model into a ``k * L``-layer one: layer ``i``
becomes layers ``k*i .. k*i + k - 1``, the first a copy of it and the others copies whose output
projections (``o_proj``, ``down_proj``) are zero, so each added block adds nothing to the
residual stream: the grown model's logits equal the original's exactly. Training then continues
from there (gradients reach the zeroed projections at once, since their inputs are non-zero).

:func:`seed_grown_checkpoint` writes the grown weights as step 0 of a zoo target training run
(``target_lm.train_target``'s checkpoint format), so the ordinary resumable training continues
from it.
"""

from __future__ import annotations

import copy
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from dspark.zoo.target_lm import TargetTrainConfig, build_optimizer, qwen3_config

__all__ = ["grow_layers", "seed_grown_checkpoint"]

# Linear layers that write into the residual stream in a Llama/Qwen3 decoder block.
_OUTPUT_PROJECTIONS = ("self_attn.o_proj", "mlp.down_proj")


def grow_layers(model: Any, factor: int) -> Any:
    """Return a copy of a Hugging Face decoder-only LM with ``factor`` times as many layers.

    Parameters
    ----------
    model : PreTrainedModel
        A Llama-style causal LM (``model.model.layers`` of decoder blocks with
        ``self_attn.o_proj`` and ``mlp.down_proj``), e.g. ``Qwen3ForCausalLM``.
    factor : int
        >= 1; each layer is followed by ``factor - 1`` function-neutral copies.

    Raises
    ------
    ValueError
        ``factor`` is not a positive integer or the blocks lack the output projections.
    """
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
        raise ValueError(f"factor: expected an integer >= 1, got {factor!r}")
    grown = copy.deepcopy(model)
    blocks = []
    for block in grown.model.layers:
        blocks.append(block)
        for _ in range(factor - 1):
            twin = copy.deepcopy(block)
            for name in _OUTPUT_PROJECTIONS:
                proj = twin.get_submodule(name)
                with torch.no_grad():
                    proj.weight.zero_()
                    if proj.bias is not None:
                        proj.bias.zero_()
            blocks.append(twin)
    for i, block in enumerate(blocks):
        block.self_attn.layer_idx = i  # the KV cache indexes layers by this
    grown.model.layers = torch.nn.ModuleList(blocks)
    cfg = grown.config
    cfg.num_hidden_layers = len(blocks)
    if getattr(cfg, "layer_types", None):
        cfg.layer_types = [t for t in cfg.layer_types for _ in range(factor)]
    return grown


def seed_grown_checkpoint(
    src_model_dir: str | Path, run_dir: str | Path, cfg: TargetTrainConfig
) -> Path:
    """Write ``run_dir/checkpoint/``: the target at ``src_model_dir`` grown to ``cfg.num_layers``.

    Resuming ``train_target(run_dir, cfg, ...)`` then trains the grown model with a fresh
    optimizer from step 0. An existing checkpoint is never overwritten.

    Raises
    ------
    FileExistsError
        ``run_dir`` holds a checkpoint (the run has started; resume it instead).
    ValueError
        ``cfg.num_layers`` is not a multiple of the source's layers, or the shapes differ.
    """
    from transformers import Qwen3ForCausalLM

    from dspark.models import load_target
    from dspark.utils.checkpoint import checkpoint_dir
    from dspark.zoo.target_lm import STATE

    out = Path(run_dir)
    ckpt = out / "checkpoint"
    if ckpt.exists() or (out / "checkpoint.pt").exists():
        raise FileExistsError(f"{out}: the grown run has started; resume it instead")
    src = load_target(src_model_dir, dtype=torch.float32)
    layers = src.config.num_hidden_layers
    if cfg.num_layers % layers:
        raise ValueError(
            f"cfg.num_layers: expected a multiple of the source's {layers} layers, "
            f"got {cfg.num_layers}"
        )
    grown = grow_layers(src, cfg.num_layers // layers)
    # The training run builds its model from cfg: load the grown weights into exactly that.
    eos = src.config.eos_token_id
    model = Qwen3ForCausalLM(qwen3_config(cfg, eos if isinstance(eos, int) else 0))
    missing, unexpected = model.load_state_dict(grown.state_dict(), strict=False)
    if unexpected or [k for k in missing if not k.endswith("lm_head.weight")]:
        raise ValueError(
            f"src_model_dir: shapes differ from cfg (missing {missing}, extra {unexpected})"
        )
    out.mkdir(parents=True, exist_ok=True)
    state = {
        "config": asdict(cfg),
        "model": model.state_dict(),
        "optim": build_optimizer(model, cfg).state_dict(),  # fresh: no moments yet
        "step": 0,
        "losses": [],
        "elapsed": 0.0,
        "grown_from": str(src_model_dir),
    }
    with checkpoint_dir(ckpt) as d:  # checksummed, swapped in whole
        torch.save(state, d / STATE)
    return ckpt
