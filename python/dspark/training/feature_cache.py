"""Compact, sharded, checksummed cache of target hidden states for offline drafter training.

Stored per token: the token id (int32), the loss mask (uint8), the concatenated feature-layer
outputs (bf16, fp16, fp32 or fp8 with one float32 scale per token and layer) and the target's
final (post-norm) hidden state **only at the rows the losses read**: row t is needed iff
``loss_mask[t + 1]`` (it gives p_t for the label at t + 1; DSpark, DFlash and Eagle3 use the
same rows). The target distribution is recomputed in chunks from these rows through the frozen
LM head; no logits are stored.

Layout: ``manifest.json`` (written last) and ``shard-NNNNN.safetensors`` files. The whole cache
is built in a directory beside the destination and swapped in with one rename when complete, so
an overwrite killed midway keeps the old cache. The manifest records the target identity,
feature layers, dtypes, shapes, per-shard sample counts, byte sizes and SHA-256 checksums.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from dspark.utils.io import (
    atomic_write,
    atomic_write_json,
    check_file,
    file_sha256,
    load_json,
    recover_dir,
    swap_dir,
    tmp_dir_name,
)

__all__ = [
    "CACHE_VERSION",
    "CacheWriter",
    "TargetCache",
    "estimate_bytes_per_token",
    "target_identity",
    "target_outputs",
]

CACHE_VERSION = 1
MANIFEST = "manifest.json"
STORAGE_DTYPES = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
    "fp8": torch.float8_e4m3fn,
}
_FP8_MAX = 448.0


def estimate_bytes_per_token(
    hidden_size: int,
    num_feature_layers: int,
    feature_dtype: str = "bfloat16",
    last_dtype: str = "bfloat16",
    loss_fraction: float = 1.0,
) -> float:
    """Bytes per token of a cache (payload only; headers are a few KB per shard).

    Parameters
    ----------
    hidden_size, num_feature_layers : int
    feature_dtype, last_dtype : {"float32", "bfloat16", "float16", "fp8"}
    loss_fraction : float
        Fraction of tokens whose next token is in the loss mask (rows storing the final hidden
        state).
    """
    for name, v in (("feature_dtype", feature_dtype), ("last_dtype", last_dtype)):
        if v not in STORAGE_DTYPES:
            raise ValueError(f"{name}: expected one of {sorted(STORAGE_DTYPES)}, got {v!r}")
    if not 0.0 <= loss_fraction <= 1.0:
        raise ValueError(f"loss_fraction: expected a value in [0, 1], got {loss_fraction}")

    def row(dt: str, n: int) -> float:
        size = STORAGE_DTYPES[dt].itemsize * hidden_size * n
        return size + (4 * n if dt == "fp8" else 0)

    return 4 + 1 + row(feature_dtype, num_feature_layers) + loss_fraction * row(last_dtype, 1)


def target_identity(target: Any) -> dict[str, Any]:
    """Fingerprint of a target: config fields plus a digest of a strided sample of the LM head."""
    from dspark.models.config import target_fingerprint

    w = target.get_output_embeddings().weight.detach().flatten()
    sample = w[:: max(1, w.numel() // 65536)].float().cpu().numpy().tobytes()
    return {
        **target_fingerprint(target.config),
        "name_or_path": str(getattr(target.config, "_name_or_path", "")),
        "lm_head_digest": hashlib.sha256(sample).hexdigest()[:16],
    }


@torch.no_grad()
def target_outputs(
    target: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    feature_layers: Sequence[int],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the target body once: feature-layer outputs and the final (post-norm) hidden state.

    Returns
    -------
    features : Tensor (B, S, m * d)
    last_hidden : Tensor (B, S, d)
    """
    from dspark.models.features import FeatureCapture

    body = target.get_decoder()
    with FeatureCapture(target, feature_layers) as cap:
        out = body(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    return cap.features(), out.last_hidden_state


def _quantise(x: torch.Tensor, dtype: str, groups: int) -> dict[str, torch.Tensor]:
    if dtype != "fp8":
        return {"": x.to(STORAGE_DTYPES[dtype]).contiguous()}
    g = x.float().view(x.shape[0], groups, -1)
    scale = (g.abs().amax(-1, keepdim=True) / _FP8_MAX).clamp_min(1e-12)
    q = (g / scale).to(torch.float8_e4m3fn).view(x.shape[0], -1)
    return {"": q.contiguous(), "_scale": scale[..., 0].contiguous()}


def _dequantise(q: torch.Tensor, scale: torch.Tensor | None, groups: int) -> torch.Tensor:
    if scale is None:
        return q
    return (q.float().view(q.shape[0], groups, -1) * scale[..., None]).view(q.shape[0], -1)


class CacheWriter:
    """Append samples, flush shards atomically, write the manifest on :meth:`close`.

    Parameters
    ----------
    path : path-like
        Output directory (must not already hold a manifest unless ``overwrite``).
    target : PreTrainedModel
        Identity recorded in the manifest.
    feature_layers : list of int
    feature_dtype, last_dtype : {"float32", "bfloat16", "float16", "fp8"}
    shard_tokens : int
        Start a new shard after this many tokens.
    meta : dict, optional
        Extra provenance (data files, chat template, system prompt, max_length).
    part : str
        Writer id when several processes fill one directory (see :func:`merge_parts`): shard
        names get this prefix and :meth:`close` writes ``manifest.<part>.json`` into the shared
        staging directory ``.<name>.parts`` beside ``path``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        target: Any,
        feature_layers: Sequence[int],
        *,
        feature_dtype: str = "bfloat16",
        last_dtype: str = "bfloat16",
        shard_tokens: int = 1 << 20,
        meta: dict[str, Any] | None = None,
        overwrite: bool = False,
        part: str = "",
    ) -> None:
        for name, v in (("feature_dtype", feature_dtype), ("last_dtype", last_dtype)):
            if v not in STORAGE_DTYPES:
                raise ValueError(f"{name}: expected one of {sorted(STORAGE_DTYPES)}, got {v!r}")
        self.dest = recover_dir(path)
        if (self.dest / MANIFEST).exists() and not overwrite:
            raise FileExistsError(f"path: {self.dest} already holds a cache (pass overwrite=True)")
        # Built beside the destination (the old cache stays intact until close() swaps it out).
        self.dir = _staging(self.dest) if part else tmp_dir_name(self.dest)
        if not part:  # a single writer: what a killed multi-process build left is stale
            shutil.rmtree(_staging(self.dest), ignore_errors=True)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.part = part
        d = int(target.config.get_text_config().hidden_size)
        self.layers, self.hidden = list(feature_layers), d
        self.fdt, self.ldt, self.shard_tokens = feature_dtype, last_dtype, shard_tokens
        self.manifest: dict[str, Any] = {
            "version": CACHE_VERSION,
            "target": target_identity(target),
            "feature_layers": self.layers,
            "hidden_size": d,
            "feature_dtype": feature_dtype,
            "last_dtype": last_dtype,
            "meta": meta or {},
            "shards": [],
            "num_samples": 0,
            "num_tokens": 0,
            "num_last_rows": 0,
        }
        self._buf: list[dict[str, Any]] = []
        self._buf_tokens = 0

    def add(
        self,
        input_ids: torch.Tensor,
        loss_mask: torch.Tensor,
        features: torch.Tensor,
        last_hidden: torch.Tensor,
        sample_id: int | None = None,
    ) -> None:
        """Add one sample: ids (S,), mask (S,), features (S, m*d), final hidden (S, d).

        ``sample_id`` (default: running count) orders samples when parts are merged."""
        s, f = input_ids.shape[0], len(self.layers) * self.hidden
        if (loss_mask.shape, features.shape, last_hidden.shape) != ((s,), (s, f), (s, self.hidden)):
            raise ValueError(
                f"add: expected shapes ({s},), ({s}, {f}), ({s}, {self.hidden}); got "
                f"{tuple(loss_mask.shape)}, {tuple(features.shape)}, {tuple(last_hidden.shape)}"
            )
        need = torch.zeros(s, dtype=torch.bool)
        need[:-1] = loss_mask[1:].bool().cpu()
        self._buf.append(
            {
                "ids": input_ids.to(torch.int32).cpu(),
                "mask": loss_mask.to(torch.uint8).cpu(),
                "feat": features.detach().cpu(),
                "last": last_hidden.detach().cpu()[need],
                "id": self.manifest["num_samples"] + len(self._buf)
                if sample_id is None
                else int(sample_id),
            }
        )
        self._buf_tokens += s
        if self._buf_tokens >= self.shard_tokens:
            self._flush()

    def _flush(self) -> None:
        if not self._buf:
            return
        from safetensors.torch import save_file

        b = self._buf
        lens = torch.tensor([x["ids"].shape[0] for x in b])
        nlast = torch.tensor([x["last"].shape[0] for x in b])
        t = {
            "offsets": torch.cat([torch.zeros(1, dtype=torch.long), lens.cumsum(0)]),
            "last_offsets": torch.cat([torch.zeros(1, dtype=torch.long), nlast.cumsum(0)]),
            "input_ids": torch.cat([x["ids"] for x in b]),
            "loss_mask": torch.cat([x["mask"] for x in b]),
        }
        feat = torch.cat([x["feat"] for x in b])
        for k, v in _quantise(feat, self.fdt, len(self.layers)).items():
            t["features" + k] = v
        last = torch.cat([x["last"] for x in b])
        for k, v in _quantise(last, self.ldt, 1).items():
            t["last_hidden" + k] = v
        name = f"{self.part}shard-{len(self.manifest['shards']):05d}.safetensors"
        path = self.dir / name
        atomic_write(path, lambda p: save_file(t, p))
        self.manifest["shards"].append(
            {
                "file": name,
                "num_samples": len(b),
                "num_tokens": int(lens.sum()),
                "bytes": path.stat().st_size,
                "sha256": file_sha256(path),
                "sample_ids": [x["id"] for x in b],
            }
        )
        self.manifest["num_samples"] += len(b)
        self.manifest["num_tokens"] += int(lens.sum())
        self.manifest["num_last_rows"] += int(nlast.sum())
        self._buf, self._buf_tokens = [], 0

    def close(self) -> dict[str, Any]:
        """Flush the last shard, write the manifest and (single writer) swap the cache in."""
        self._flush()
        m = self.manifest
        total = sum(s["bytes"] for s in m["shards"])
        m["bytes_per_token"] = total / max(1, m["num_tokens"])
        name = f"manifest.{self.part}json" if self.part else MANIFEST
        atomic_write_json(self.dir / name, m, indent=2)
        if not self.part:
            swap_dir(self.dir, self.dest)
        return m


def merge_parts(path: str | os.PathLike[str], parts: list[str]) -> dict[str, Any]:
    """Combine the part manifests written by several :class:`CacheWriter` into ``manifest.json``
    and swap the finished cache in at ``path`` (an old cache there stays intact until then).

    Raises ValueError when the parts disagree on the target, layers or dtypes.
    """
    dest = Path(path)
    d = _staging(dest)
    keys = ("version", "target", "feature_layers", "hidden_size", "feature_dtype", "last_dtype")
    need = (*keys, "shards", "num_samples", "num_tokens", "num_last_rows")
    ms = [load_json(d / f"manifest.{p}json", required=need) for p in parts]
    for m in ms[1:]:
        bad = [k for k in keys if m[k] != ms[0][k]]
        if bad:
            raise ValueError(f"parts: cache parts disagree on {bad}")
    out = dict(ms[0])
    out["shards"] = [sh for m in ms for sh in m["shards"]]
    for k in ("num_samples", "num_tokens", "num_last_rows"):
        out[k] = sum(m[k] for m in ms)
    out["bytes_per_token"] = sum(s["bytes"] for s in out["shards"]) / max(1, out["num_tokens"])
    atomic_write_json(d / MANIFEST, out, indent=2)
    # Part manifests and shards of an earlier, killed run are not part of this cache.
    used = {MANIFEST, *(sh["file"] for sh in out["shards"])}
    for f in d.iterdir():
        if f.name not in used:
            f.unlink()
    swap_dir(d, dest)
    return out


def _staging(dest: Path) -> Path:
    """Where the writers of a multi-process cache build it (one name all processes agree on)."""
    return dest.with_name(f".{dest.name}.parts")


class TargetCache:
    """Read a cache written by :class:`CacheWriter` (validated on open).

    Parameters
    ----------
    path : path-like
    verify : bool
        Recompute every shard's SHA-256 (reads the whole cache once; default). ``False`` skips
        it for speed; sizes and the manifest are always checked.

    Raises
    ------
    FileNotFoundError
        No manifest (missing or unfinished cache) or a missing shard.
    ValueError
        Unknown version, size or checksum mismatch (corruption).
    """

    def __init__(self, path: str | os.PathLike[str], *, verify: bool = True) -> None:
        self.dir = recover_dir(path)
        mpath = self.dir / MANIFEST
        if not mpath.is_file():
            raise FileNotFoundError(f"path: {self.dir} has no {MANIFEST} (missing or unfinished)")
        m = load_json(mpath, required=("version", "feature_layers", "hidden_size", "shards"))
        if m.get("version") != CACHE_VERSION:
            raise ValueError(f"path: cache version {m.get('version')}, expected {CACHE_VERSION}")
        self.manifest = m
        self.layers, self.hidden = m["feature_layers"], m["hidden_size"]
        self._index: list[Any] = []
        for si, sh in enumerate(m["shards"]):
            if not isinstance(sh, dict) or {"file", "bytes", "sha256", "num_samples"} - set(sh):
                raise ValueError(f"path: {mpath}: shard entry {si} is incomplete: {sh!r}")
            check_file(self.dir / sh["file"], sh, MANIFEST, checksum=verify)
            ids = sh.get("sample_ids", range(sh["num_samples"]))
            self._index.extend((sid, si, j) for j, sid in enumerate(ids))
        # Sample order is the input order, however many processes wrote the parts.
        self._index = [(si, j) for _, si, j in sorted(self._index)]
        self._open: dict[int, Any] = {}

    def __len__(self) -> int:
        return len(self._index)

    def check_compatible(self, target: Any, feature_layers: Sequence[int]) -> None:
        """Raise ValueError when the cache was not built from ``target`` with these layers."""
        have, want = self.manifest["target"], target_identity(target)
        bad = [k for k in want if k != "name_or_path" and have.get(k) != want[k]]
        if bad:
            diff = ", ".join(f"{k}: cache {have.get(k)!r} vs target {want[k]!r}" for k in bad)
            raise ValueError(f"cache: built for a different target ({diff})")
        if list(feature_layers) != list(self.layers):
            raise ValueError(
                f"cache: holds feature layers {self.layers}, the drafter needs "
                f"{list(feature_layers)}"
            )

    def _shard(self, si: int) -> Any:
        from safetensors import safe_open

        if si not in self._open:
            if len(self._open) >= 4:  # bounded number of open shards
                self._open.pop(next(iter(self._open)))
            self._open[si] = safe_open(str(self.dir / self.manifest["shards"][si]["file"]), "pt")
        return self._open[si]

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        """Sample ``i``: input_ids (S,) int64, loss_mask (S,) bool, features (S, m*d) float32,
        last_hidden (S, d) float32 (zero at rows no loss reads)."""
        si, j = self._index[i]
        f = self._shard(si)
        off, loff = f.get_slice("offsets"), f.get_slice("last_offsets")
        lo, hi = (int(x) for x in off[j : j + 2])
        llo, lhi = (int(x) for x in loff[j : j + 2])
        ids = f.get_slice("input_ids")[lo:hi].long()
        mask = f.get_slice("loss_mask")[lo:hi].bool()
        keys = set(f.keys())

        def load(name: str, a: int, b: int, groups: int) -> torch.Tensor:
            q = f.get_slice(name)[a:b]
            sc = f.get_slice(name + "_scale")[a:b] if name + "_scale" in keys else None
            return _dequantise(q, sc, groups).float()

        feat = load("features", lo, hi, len(self.layers))
        rows = load("last_hidden", llo, lhi, 1)
        need = torch.zeros(hi - lo, dtype=torch.bool)
        need[:-1] = mask[1:]
        if int(need.sum()) != rows.shape[0]:
            raise ValueError(f"cache: sample {i} has inconsistent final-hidden rows (corrupted)")
        last = torch.zeros(hi - lo, self.hidden)
        last[need] = rows
        return {"input_ids": ids, "loss_mask": mask, "features": feat, "last_hidden": last}
