"""``dspark serve``: the OpenAI-compatible server (FastAPI + uvicorn) over the engine.

``dspark serve`` with no arguments serves the micro zoo (target + DSpark drafter, scheduler
mode) on 127.0.0.1:8000; ``dspark serve TARGET --drafter PATH`` serves local checkpoints.
"""

from __future__ import annotations

import argparse

from dspark.cli._settings import add_config_arguments, add_flag, call


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="OpenAI-compatible server (completions, chat, /metrics)")
    add_flag(p, "target", nargs="?", help="local Hugging Face target directory (default: zoo)")
    add_flag(p, "--drafter", help="dspark drafter directory bound to the target")
    add_flag(p, "--host", help="address to bind (default 127.0.0.1)")
    add_flag(p, "--port", type=int, help="port (default 8000)")
    add_flag(
        p,
        "--speculation",
        choices=["scheduler", "fixed", "none"],
        help="verify lengths: load-aware scheduler, a fixed K, or no speculation",
    )
    add_flag(p, "--num-draft-tokens", type=int, help="K for --speculation fixed")
    add_flag(p, "--max-num-seqs", type=int, help="running requests at most (default 32)")
    add_flag(p, "--max-model-len", type=int, help="prompt + output tokens at most")
    add_flag(p, "--max-num-batched-tokens", type=int, help="tokens per step at most (512)")
    add_flag(p, "--max-queue", type=int, help="waiting requests beyond which 503 (256)")
    add_flag(p, "--served-model-name", help="model id in the API (default: directory name)")
    add_flag(p, "--threads", type=int, help="torch CPU threads")
    add_config_arguments(p)
    p.set_defaults(func=lambda args: call(args, serve))


def serve(
    *,
    target: str | None = None,
    drafter: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    speculation: str | None = None,
    num_draft_tokens: int | None = None,
    max_num_seqs: int = 32,
    max_model_len: int | None = None,
    max_num_batched_tokens: int = 512,
    max_queue: int = 256,
    served_model_name: str | None = None,
    threads: int | None = None,
) -> int:
    """Load the model, measure the step cost (scheduler mode), serve until interrupted."""
    import torch
    import uvicorn

    from dspark.serve.launch import build_server, load_engine

    if threads is not None:
        torch.set_num_threads(threads)
    print(f"dspark serve: loading {target or 'the micro zoo'} ...", flush=True)
    engine, tok, name = load_engine(
        target,
        drafter,
        speculation=speculation,
        num_draft_tokens=num_draft_tokens,
        max_num_seqs=max_num_seqs,
        max_model_len=max_model_len,
        max_num_batched_tokens=max_num_batched_tokens,
    )
    if engine.monitor is not None:
        print(f"dspark serve: measured step cost {engine.monitor.table()}", flush=True)
    name = served_model_name or name
    print(
        f"dspark serve: model {name!r}, speculation {engine.speculation} (K={engine.k}), "
        f"{engine.runner.cache.num_pages} KV pages; http://{host}:{port}/v1",
        flush=True,
    )
    app = build_server(engine, tok, name, max_queue=max_queue)
    uvicorn.run(app, host=host, port=port, log_level="info", timeout_graceful_shutdown=30)
    return 0
