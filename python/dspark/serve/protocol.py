"""Request bodies of the OpenAI-compatible API, validated by pydantic (strict types).

A field of the wrong type or out of range is a 400 naming the field (:func:`validation_message`).
Unknown fields are ignored, as OpenAI-compatible servers do (clients send vendor extensions);
dspark's own extensions are ``top_k``, ``min_p``, ``ignore_eos`` and ``tpot_slo_ms``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "ChatCompletionRequest",
    "ChatMessage",
    "CompletionRequest",
    "SpeculationSetting",
    "validation_message",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)


class StreamOptions(_Strict):
    include_usage: bool = False


class _Sampling(_Strict):
    model: str | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=1.0, ge=0.0, le=100.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    top_k: int = Field(default=0, ge=-1)  # -1 or 0: off (vLLM uses -1)
    min_p: float = Field(default=0.0, ge=0.0, le=1.0)
    seed: int | None = Field(default=None, ge=-(2**63), lt=2**63)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(default=1, ge=1, le=1)
    ignore_eos: bool = False
    tpot_slo_ms: float | None = Field(default=None, gt=0.0)
    presence_penalty: float = Field(default=0.0, ge=0.0, le=0.0)
    frequency_penalty: float = Field(default=0.0, ge=0.0, le=0.0)
    user: str | None = None

    @field_validator("stop")
    @classmethod
    def _stops(cls, v: str | list[str] | None) -> list[str]:
        stops = [v] if isinstance(v, str) else list(v or [])
        if len(stops) > 8 or any(not s for s in stops):
            raise ValueError("expected at most 8 non-empty strings")
        return stops


class CompletionRequest(_Sampling):
    prompt: str | list[int]
    max_tokens: int | None = Field(default=16, ge=1)  # OpenAI's default for completions
    logprobs: int | None = Field(default=None, ge=0, le=20)
    echo: Literal[False] = False

    @field_validator("prompt", mode="before")
    @classmethod
    def _prompt(cls, v: Any) -> Any:
        if isinstance(v, list) and v and isinstance(v[0], str):
            if len(v) != 1:
                raise ValueError("expected one prompt (batched prompts are not supported)")
            v = v[0]
        if not v:
            raise ValueError("expected a non-empty prompt")
        return v


class ChatMessage(_Strict):
    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: str | list[dict[str, Any]]

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        parts = []
        for part in self.content:
            if part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise ValueError("content: only text parts are supported")
            parts.append(part["text"])
        return "".join(parts)


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    max_completion_tokens: int | None = Field(default=None, ge=1)


class SpeculationSetting(_Strict):
    mode: Literal["none", "fixed", "scheduler"]
    k: int | None = Field(default=None, ge=1)


def validation_message(errors: list[dict[str, Any]]) -> tuple[str, str | None]:
    """One readable message (and the offending parameter) from pydantic's error list."""
    parts, param = [], None
    for e in errors[:3]:
        loc = [str(x) for x in e.get("loc", ()) if x != "body"]
        # Drop pydantic's union-branch names ("str", "list[int]", ...) from the location.
        loc = [x for x in loc if not any(c in x for c in "[]") and x not in ("str", "int")]
        name = ".".join(loc) or "body"
        param = param or (loc[0] if loc else None)
        if e.get("type") == "json_invalid":
            parts.append(f"malformed JSON body: {e.get('ctx', {}).get('error', e.get('msg'))}")
            continue
        got = e.get("input")
        shown = repr(got) if not isinstance(got, (dict, list)) or len(repr(got)) < 80 else "..."
        parts.append(f"{name}: {e.get('msg')} (got {shown})")
    return "; ".join(parts), param
