"""The committed micro zoo: export from a build directory, checksum manifest, validated loading.

Layout (``dspark/zoo/weights/`` in the package, or any exported directory)::

    MANIFEST.json               SHA-256 and size of every file below, plus a training summary
    target/                     Qwen3 causal LM (bf16 safetensors) + tokenizer + train_record.json
    assistant/                  small plain LM for Hugging Face assisted generation (peer)
    drafters/{dspark,dflash,eagle3}/   config.json, model.safetensors, train_record.json
    prompts/{code,prose}.jsonl  held-out prompts ({"turns": [...]})
    data_record.json            how the drafters' training data was sampled
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dspark.utils.io import atomic_dir, check_file, file_sha256, load_json, recover_dir

__all__ = ["ZOO_DIR", "Zoo", "export_zoo", "load_zoo", "verify_zoo"]

ZOO_DIR = Path(__file__).resolve().parent / "weights"
MANIFEST = "MANIFEST.json"
DRAFTERS = ("dspark", "dflash", "eagle3")
DOMAINS = ("code", "prose")
_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
)
_MODEL_FILES = ("config.json", "generation_config.json", "model.safetensors")


@dataclass
class Zoo:
    """A loaded micro zoo (see :func:`load_zoo`)."""

    path: Path
    target: Any
    tokenizer: Any
    drafters: dict[str, Any]
    assistant: Any | None
    prompts: dict[str, Path]
    records: dict[str, Any] = field(default_factory=dict)


def _record_path(name: str) -> str:
    """Relative path of a model's ``train_record.json`` in an exported zoo."""
    return (
        f"{name}/train_record.json"
        if name in ("target", "assistant")
        else (f"drafters/{name}/train_record.json")
    )


def _copy(src: Path, dst: Path, names: tuple[str, ...], required: tuple[str, ...]) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for n in names:
        if (src / n).is_file():
            shutil.copy2(src / n, dst / n)
        elif n in required:
            raise FileNotFoundError(f"build: {src / n} is missing (has that stage finished?)")


def export_zoo(build_dir: str | Path, dest: str | Path = ZOO_DIR) -> dict[str, Any]:
    """Copy the finished models of a ``dspark zoo build`` directory into ``dest`` with a manifest.

    The new tree is assembled next to ``dest`` and swapped in with a rename, so an interrupted
    export never leaves a half-written zoo. Returns the manifest.
    """
    src, dest = Path(build_dir), Path(dest)
    with atomic_dir(dest) as tmp:
        return _fill_zoo(src, tmp)


def _fill_zoo(src: Path, tmp: Path) -> dict[str, Any]:
    model_req = ("config.json", "model.safetensors")
    _copy(src / "target" / "model", tmp / "target", _MODEL_FILES, model_req)
    _copy(src / "tokenizer", tmp / "target", _TOKENIZER_FILES, ("tokenizer.json",))
    _copy(src / "target", tmp / "target", ("train_record.json",), ("train_record.json",))
    _copy(src / "assistant" / "model", tmp / "assistant", _MODEL_FILES, model_req)
    _copy(src / "assistant", tmp / "assistant", ("train_record.json",), ("train_record.json",))
    for kind in DRAFTERS:
        names = ("config.json", "model.safetensors", "train_record.json")
        _copy(src / "drafters" / kind / "model", tmp / "drafters" / kind, names, names)
    _copy(
        src / "prompts",
        tmp / "prompts",
        tuple(f"{d}.jsonl" for d in DOMAINS),
        tuple(f"{d}.jsonl" for d in DOMAINS),
    )
    _copy(src / "data", tmp, ("data_record.json",), ("data_record.json",))
    files = {
        p.relative_to(tmp).as_posix(): {"sha256": file_sha256(p), "bytes": p.stat().st_size}
        for p in sorted(tmp.rglob("*"))
        if p.is_file()
    }
    summary = {}
    for name in ("target", "assistant", *DRAFTERS):
        rec = load_json(tmp / _record_path(name))
        summary[name] = {
            k: rec.get(k)
            for k in ("steps", "tokens_seen", "final_loss", "final_tau_estimate")
            if k in rec
        }
    manifest = {
        "format": 1,
        "total_bytes": sum(f["bytes"] for f in files.values()),
        "training": summary,
        "files": files,
    }
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def verify_zoo(path: str | Path | None = None) -> dict[str, Any]:
    """Check every file of a zoo against its manifest; returns the manifest.

    Raises
    ------
    FileNotFoundError
        No zoo (or no manifest) at ``path``.
    ValueError
        A file is missing, has another size or checksum, or an unlisted model file is present.
    """
    root = recover_dir(Path(path) if path is not None else ZOO_DIR)
    if not (root / MANIFEST).is_file():
        raise FileNotFoundError(
            f"zoo: no {MANIFEST} in {root}; build one with `dspark zoo build` and "
            "`dspark zoo export`"
        )
    manifest = load_json(root / MANIFEST, required=("files",))
    for rel, meta in manifest["files"].items():
        check_file(root / rel, meta, MANIFEST, what="zoo", missing=ValueError)
    extra = [
        p.relative_to(root).as_posix()
        for p in root.rglob("*.safetensors")
        if p.relative_to(root).as_posix() not in manifest["files"]
    ]
    if extra:
        raise ValueError(f"zoo: weights not in {MANIFEST}: {sorted(extra)}")
    return manifest


def load_zoo(
    path: str | Path | None = None,
    *,
    drafters: tuple[str, ...] = DRAFTERS,
    assistant: bool = True,
    dtype: Any = None,
    verify: bool = True,
) -> Zoo:
    """Load the micro zoo (default: the one shipped in the package).

    Parameters
    ----------
    path : path-like, optional
        An exported zoo directory.
    drafters : tuple of str
        Which drafters to load.
    assistant : bool
        Also load the small plain LM used for Hugging Face assisted generation.
    dtype : torch.dtype, optional
        Compute dtype (default float32, fastest on CPU; the files are bfloat16).
    verify : bool
        Check every file against the manifest's SHA-256 first.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from dspark.models import Drafter, load_target

    root = recover_dir(Path(path) if path is not None else ZOO_DIR)
    manifest = verify_zoo(root) if verify else load_json(root / MANIFEST, required=("files",))
    unknown = sorted(set(drafters) - set(DRAFTERS))
    if unknown:
        raise ValueError(f"drafters: expected names from {DRAFTERS}, got {unknown}")
    dtype = dtype or torch.float32
    target = load_target(root / "target", dtype=dtype)
    tokenizer = AutoTokenizer.from_pretrained(str(root / "target"), local_files_only=True)
    loaded = {
        k: Drafter.from_pretrained(root / "drafters" / k, target).to(dtype).eval() for k in drafters
    }
    helper = None
    if assistant:
        helper = AutoModelForCausalLM.from_pretrained(
            str(root / "assistant"), dtype=dtype, local_files_only=True
        ).eval()
    records = {"manifest": manifest.get("training", {})}
    for name in ("target", "assistant", *drafters):
        records[name] = load_json(root / _record_path(name))
    return Zoo(
        path=root,
        target=target,
        tokenizer=tokenizer,
        drafters=loaded,
        assistant=helper,
        prompts={d: root / "prompts" / f"{d}.jsonl" for d in DOMAINS},
        records=records,
    )
