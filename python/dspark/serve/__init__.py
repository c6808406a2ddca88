"""``dspark serve``: an OpenAI-compatible server over the continuous-batching engine.

``engine_loop`` (the engine on its own thread, driven from asyncio) -> ``app`` (FastAPI routes,
SSE streaming, errors) with ``protocol`` (request validation), ``text`` (incremental
detokenization, stop strings) and ``metrics`` (Prometheus); ``launch`` loads a model and runs
uvicorn (or a server thread, for tests and notebooks).
"""

from __future__ import annotations

__all__ = ["AsyncEngine", "ServerThread", "build_app", "build_server", "load_engine"]


def __getattr__(name: str):  # keep `import dspark.serve` free of FastAPI until it is used
    if name == "AsyncEngine":
        from dspark.serve.engine_loop import AsyncEngine

        return AsyncEngine
    if name == "build_app":
        from dspark.serve.app import build_app

        return build_app
    if name in ("ServerThread", "build_server", "load_engine"):
        from dspark.serve import launch

        return getattr(launch, name)
    raise AttributeError(name)
