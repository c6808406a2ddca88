"""Load a target (+ drafter) into an engine and serve it with uvicorn.

:func:`load_engine` builds the :class:`dspark.engine.Engine` (default: the micro zoo's target
and DSpark drafter), :func:`build_server` wraps it in the app, and :class:`ServerThread` runs a
uvicorn server on a background thread (port 0 picks a free port), as the tests do.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["ServerThread", "build_server", "load_engine"]


def load_engine(
    target: str | os.PathLike[str] | None = None,
    drafter: str | os.PathLike[str] | None = None,
    *,
    speculation: str | None = None,
    num_draft_tokens: int | None = None,
    max_num_seqs: int = 32,
    max_model_len: int | None = None,
    max_num_batched_tokens: int = 512,
    page_size: int = 16,
    profile_context: int = 256,
) -> tuple[Any, Any, str]:
    """``(engine, tokenizer, model_name)`` for ``dspark serve``.

    With no ``target`` the micro zoo is served (its DSpark drafter unless ``drafter`` names
    another path); a ``target`` path without ``drafter`` serves plain decoding. The scheduler
    mode measures the engine's step cost at start-up (``Engine.auto_scheduler``).
    """
    import torch
    from transformers import AutoTokenizer

    from dspark.engine import Engine
    from dspark.models import Drafter, load_target

    if target is None:
        from dspark.zoo.package import ZOO_DIR

        target = Path(ZOO_DIR) / "target"
        drafter = drafter or Path(ZOO_DIR) / "drafters" / "dspark"
        name = "dspark-zoo"
    else:
        name = Path(target).name
    for arg, path in (("target", target), ("drafter", drafter)):
        if path is not None and not Path(path).is_dir():
            raise FileNotFoundError(f"{arg}: expected a local model directory, got {str(path)!r}")
    model = load_target(target, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(str(target), local_files_only=True)
    d = Drafter.from_pretrained(drafter, model).eval() if drafter is not None else None
    if speculation is None:
        speculation = "none" if d is None else ("scheduler" if d.has_confidence else "fixed")
    eng = Engine(
        model,
        d,
        speculation="none" if speculation == "scheduler" else speculation,
        num_draft_tokens=num_draft_tokens if speculation == "fixed" else None,
        max_num_seqs=max_num_seqs,
        max_model_len=max_model_len,
        max_num_batched_tokens=max_num_batched_tokens,
        page_size=page_size,
    )
    if speculation == "scheduler":
        eng.scheduler = eng.auto_scheduler(profile_context)
        eng.set_speculation("scheduler", num_draft_tokens)
    return eng, tok, name


def build_server(
    engine: Any, tokenizer: Any, model_name: str, *, max_queue: int = 256, drain_timeout=30.0
) -> Any:
    """The FastAPI app for ``engine`` (see :func:`dspark.serve.app.build_app`)."""
    from dspark.serve.app import build_app
    from dspark.serve.engine_loop import AsyncEngine

    return build_app(
        AsyncEngine(engine, max_queue=max_queue),
        tokenizer,
        model_name=model_name,
        drain_timeout=drain_timeout,
    )


class ServerThread:
    """A uvicorn server for ``app`` on a background thread, bound to ``host`` (127.0.0.1).

    ``port=0`` picks a free port; :attr:`url` is the base URL once :meth:`start` returns.
    :meth:`stop` shuts down gracefully (running requests drain first). Also a context manager.
    """

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, **config: Any):
        import uvicorn

        config.setdefault("log_level", "warning")
        config.setdefault("timeout_graceful_shutdown", 30)
        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, **config))
        # uvicorn installs signal handlers only on the main thread: none here.
        self.host = host
        self.thread = threading.Thread(target=self.server.run, name="dspark-http", daemon=True)
        self.url = ""

    def start(self, timeout: float = 60.0) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start (see its log)")
            time.sleep(0.01)
        sock = self.server.servers[0].sockets[0]
        self.url = f"http://{self.host}:{sock.getsockname()[1]}"
        return self

    def stop(self, timeout: float = 60.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
