"""``dspark serve`` with no model arguments serves the micro zoo; SIGTERM shuts it down cleanly."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

import httpx
import openai
import pytest

from dspark.cli import main


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_the_zoo_by_default_and_stop_on_sigterm():
    port = _free_port()
    cmd = [sys.executable, "-m", "dspark.cli", "serve", "--port", str(port), "--threads", "1"]
    cmd += ["--max-num-seqs", "2", "--max-model-len", "256"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, proc.communicate()[0]
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not come up"
            time.sleep(0.25)
        c = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=60)
        assert c.models.list().data[0].id == "dspark-zoo"
        r = c.completions.create(model="dspark-zoo", prompt="def main(", max_tokens=8, seed=1)
        assert r.usage.completion_tokens <= 8 and r.choices[0].finish_reason in ("length", "stop")
        proc.send_signal(signal.SIGTERM)
        log = proc.communicate(timeout=60)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    # uvicorn drains, runs the lifespan shutdown, then re-raises the signal it caught.
    assert proc.returncode in (0, -signal.SIGTERM), log
    assert "Application shutdown complete" in log, log
    assert "speculation scheduler" in log and "measured step cost" in log, log


def test_serve_rejects_a_missing_model_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="target: expected a local model directory"):
        main(["serve", str(tmp_path / "nope")])
