"""``dspark regenerate``: rewrite the assistant turns of a dataset with the target (resumable).

The settings are the keyword parameters of :func:`regenerate_turns`; exactly one of ``target``
(generate locally with dspark) and ``url`` (an OpenAI-compatible server) is required.
"""

from __future__ import annotations

import argparse
import json

from dspark.cli._settings import add_config_arguments, add_flag, call


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("regenerate", help="regenerate assistant turns with the target (resumable)")
    add_flag(p, "--data", help="JSONL of {conversations} or {turns} (required)")
    add_flag(p, "--out", help="output JSONL (resumed if it exists; required)")
    src = p.add_mutually_exclusive_group()
    add_flag(src, "--target", help="local model directory (generate with dspark)")
    add_flag(src, "--url", help="OpenAI-compatible server base URL")
    add_flag(p, "--model", help="model name sent to the server (default: default)")
    add_flag(p, "--system-prompt")
    add_flag(p, "--batch-size", type=int, help="(default: 64)")
    add_flag(p, "--max-new-tokens", type=int, help="(default: 4096)")
    add_flag(p, "--temperature", type=float, help="(default: 0.7)")
    add_flag(p, "--top-p", type=float, help="(default: 0.8)")
    add_flag(p, "--top-k", type=int, help="(default: 20)")
    add_flag(p, "--seed", type=int, help="(default: 0)")
    add_config_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return call(args, regenerate_turns)


def regenerate_turns(
    *,
    data: str,
    out: str,
    target: str | None = None,
    url: str | None = None,
    model: str = "default",
    system_prompt: str | None = None,
    batch_size: int = 64,
    max_new_tokens: int = 4096,
    temperature: float = 0.7,
    top_p: float = 0.8,
    top_k: int = 20,
    seed: int = 0,
) -> int:
    """Regenerate the assistant turns of ``data`` into ``out`` with the target or a server."""
    from dspark.training.data import load_conversations
    from dspark.training.regenerate import LocalBackend, OpenAIBackend, regenerate

    if (target is None) == (url is None):
        raise ValueError(
            f"target/url: expected exactly one (--target DIR or --url URL), got target={target!r}, "
            f"url={url!r}"
        )
    backend: LocalBackend | OpenAIBackend
    if url:
        backend = OpenAIBackend(
            url,
            model,
            system_prompt=system_prompt,
            sampling={
                "temperature": temperature,
                "top_p": top_p,
                "top_k": top_k,
                "max_tokens": max_new_tokens,
            },
        )
    else:
        from transformers import AutoTokenizer

        from dspark.models import load_target

        backend = LocalBackend(
            load_target(target),
            AutoTokenizer.from_pretrained(target, local_files_only=True),
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            system_prompt=system_prompt,
            seed=seed,
        )
    n = regenerate(load_conversations(data), backend, out, batch_size=batch_size)
    print(json.dumps({"written": n, "out": str(out)}))
    return 0
