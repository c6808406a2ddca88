"""Answer regeneration with the target itself (on-policy training data), resumable in order.

Backends implement :class:`AnswerBackend`: :class:`LocalBackend` runs batched speculative
generation with dspark (lossless, so the answers follow the target's distribution) and
:class:`OpenAIBackend` calls an OpenAI-compatible ``/v1/chat/completions`` server. Output
records are written **in input order**, one complete batch at a time (flushed and fsynced), so
resuming counts complete lines safely; a torn last line is truncated (the reference writes in
completion order, so its line-count resume can corrupt data).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import torch

from dspark.training.data import render_prompt

__all__ = ["AnswerBackend", "LocalBackend", "OpenAIBackend", "regenerate"]

Messages = list[dict[str, str]]


class AnswerBackend(Protocol):
    """Produces one assistant answer for each conversation prefix (ending with a user turn)."""

    def answer(self, prompts: Sequence[Messages]) -> list[str]: ...


class LocalBackend:
    """Batched generation with the target through :func:`dspark.generate`.

    Parameters
    ----------
    target, tokenizer
        Hugging Face model and its tokenizer (chat template).
    drafter : Drafter, optional
        Any drafter for ``target`` (the output distribution is the target's whatever the
        drafter); default: a fresh one-layer DFlash drafter.
    system_prompt : str, optional
        Same rule as tokenisation (:func:`dspark.training.data.render_prompt`).
    """

    def __init__(
        self,
        target: Any,
        tokenizer: Any,
        *,
        drafter: Any = None,
        max_new_tokens: int = 512,
        temperature: float = 0.7,
        top_k: int = 20,
        top_p: float = 0.8,
        system_prompt: str | None = None,
        seed: int = 0,
    ) -> None:
        from dspark.models import build_drafter

        self.target, self.tok = target, tokenizer
        self.drafter = drafter or build_drafter("dflash", target, num_layers=1)
        self.kw: dict[str, Any] = dict(
            max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p
        )
        self.system_prompt, self.seed, self.calls = system_prompt, seed, 0
        eos = tokenizer.eos_token_id
        self.stop = [eos] if eos is not None else None

    def answer(self, prompts: Sequence[Messages]) -> list[str]:
        from dspark.generation import generate

        ids = [render_prompt(self.tok, p, self.system_prompt) for p in prompts]
        width = max(len(x) for x in ids)
        inp = torch.zeros(len(ids), width, dtype=torch.long)
        att = torch.zeros_like(inp)
        for i, x in enumerate(ids):  # left padding
            inp[i, width - len(x) :] = torch.tensor(x)
            att[i, width - len(x) :] = 1
        dev = self.target.get_input_embeddings().weight.device
        out = generate(
            self.target,
            self.drafter,
            inp.to(dev),
            att.to(dev),
            **self.kw,
            stop_token_ids=self.stop,
            seed=self.seed + self.calls,
        )
        self.calls += 1
        texts = []
        for b in range(len(ids)):
            toks = out.sequences[b, width : width + int(out.num_generated[b])].tolist()
            if self.stop and toks and toks[-1] in self.stop:
                toks = toks[:-1]
            texts.append(self.tok.decode(toks, skip_special_tokens=True))
        return texts


class OpenAIBackend:
    """Client of an OpenAI-compatible server (``POST {url}/v1/chat/completions``).

    Parameters
    ----------
    url : str
        Server base URL, e.g. ``http://localhost:30000``.
    model : str
    concurrency : int
        Requests in flight.
    post : callable, optional
        ``post(url, payload_dict) -> response_dict`` (default: urllib JSON POST); injectable
        for tests and custom transports.
    """

    def __init__(
        self,
        url: str,
        model: str,
        *,
        concurrency: int = 32,
        sampling: dict[str, Any] | None = None,
        system_prompt: str | None = None,
        post: Callable[[str, dict[str, Any]], dict[str, Any]] | None = None,
    ) -> None:
        self.endpoint = url.rstrip("/") + "/v1/chat/completions"
        self.model, self.concurrency = model, concurrency
        self.sampling = sampling or {"temperature": 0.7, "top_p": 0.8, "max_tokens": 4096}
        self.system_prompt = system_prompt
        self.post = post or _urllib_post

    def _one(self, messages: Messages) -> str:
        if self.system_prompt is not None and messages[0]["role"] != "system":
            messages = [{"role": "system", "content": self.system_prompt}, *messages]
        resp = self.post(
            self.endpoint, {"model": self.model, "messages": messages, **self.sampling}
        )
        try:
            return str(resp["choices"][0]["message"]["content"])
        except (KeyError, IndexError, TypeError):
            raise ValueError(f"server: unexpected response {str(resp)[:200]}") from None

    def answer(self, prompts: Sequence[Messages]) -> list[str]:
        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(pool.map(self._one, prompts))  # map keeps input order


def _urllib_post(url: str, payload: dict[str, Any]) -> dict[str, Any]:
    import urllib.request

    req = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    key = os.environ.get("OPENAI_API_KEY")
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read())


def _completed(out: Path) -> int:
    """Number of complete records in ``out``; truncates a torn last line; checks the order."""
    if not out.exists():
        return 0
    data = out.read_bytes()
    end = data.rfind(b"\n") + 1
    if end != len(data):
        with out.open("r+b") as f:
            f.truncate(end)
    lines = data[:end].splitlines()
    for i, line in enumerate(lines):
        if json.loads(line).get("id") != i:
            raise ValueError(f"out: {out} line {i + 1} has id != {i}; not a regenerate output")
    return len(lines)


def regenerate(
    conversations: Iterable[Messages],
    backend: AnswerBackend,
    out: str | os.PathLike[str],
    *,
    batch_size: int = 64,
) -> int:
    """Regenerate every assistant turn (turn by turn, keeping the user turns) into ``out``.

    Resumes after the last complete record of ``out``. Returns the number of records written
    by this call.
    """
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    done = _completed(path)
    written = 0
    batch: list[tuple[Any, Messages]] = []

    def flush() -> None:
        nonlocal written
        src = [[m for m in c if m["role"] != "assistant"] for _, c in batch]
        convs: list[Messages] = [[] for _ in batch]
        ptr = [0] * len(batch)
        while True:
            active = []
            for i, msgs in enumerate(src):
                # Copy the next non-assistant messages through the next user turn.
                j = ptr[i]
                while j < len(msgs) and msgs[j]["role"] != "user":
                    j += 1
                if j == len(msgs):
                    continue
                convs[i].extend(msgs[ptr[i] : j + 1])
                ptr[i] = j + 1
                active.append(i)
            if not active:
                break
            answers = backend.answer([convs[i] for i in active])
            for i, text in zip(active, answers, strict=True):
                convs[i].append({"role": "assistant", "content": text})
        with path.open("a", encoding="utf-8") as f:
            for (idx, _), c in zip(batch, convs, strict=True):
                f.write(json.dumps({"id": idx, "conversations": c}) + "\n")
            f.flush()
            os.fsync(f.fileno())
        written += len(batch)
        batch.clear()

    for idx, conv in enumerate(conversations):
        if idx < done:
            continue
        batch.append((idx, conv))
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    return written
