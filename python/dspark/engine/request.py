"""One request's state in the continuous-batching engine (nano-vllm's ``Sequence``).

A request moves WAITING -> RUNNING -> FINISHED (and back to WAITING when preempted). Its
prompt is prefilled in chunks (``num_computed`` counts the tokens whose K/V are in the cache);
once the prompt is in, the request carries an *anchor*: the last emitted token, not yet in the
target cache, which the next step feeds first (followed by any drafts). Sampling randomness is a
per-request Philox stream ``(seed, offset)`` advanced by verification only, so a request's output
does not depend on which other requests share its steps, or on preemption.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FinishReason", "Request", "RequestOutput", "RequestStatus"]


class RequestStatus(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"


class FinishReason(str, enum.Enum):
    STOP = "stop"  # a stop token was emitted
    LENGTH = "length"  # max_tokens reached (or the model's context)
    ABORT = "abort"  # cancelled by the caller (e.g. a client disconnect)


@dataclass
class RequestOutput:
    """What one step produced for one request."""

    request_id: str
    new_token_ids: list[int]
    finished: bool
    finish_reason: FinishReason | None
    num_prompt_tokens: int
    num_output_tokens: int
    logprobs: list[float] | None = None


@dataclass(eq=False)  # identity: requests are compared and removed by object, never by value
class Request:
    request_id: str
    prompt_token_ids: list[int]
    params: Any  # dspark.SamplingParams
    seed: int
    max_tokens: int
    stop: frozenset[int] = frozenset()  # stop token ids
    arrival_time: float = field(default_factory=time.monotonic)
    status: RequestStatus = RequestStatus.WAITING
    output_token_ids: list[int] = field(default_factory=list)
    num_computed: int = 0  # tokens of `context` whose K/V are in the target cache
    offset: int = 0  # Philox offset of the next verification
    finish_reason: FinishReason | None = None
    first_token_time: float | None = None
    num_preemptions: int = 0
    # Per-position draft statistics of this request: proposed / accepted counts.
    drafted: list[int] = field(default_factory=list)
    accepted: list[int] = field(default_factory=list)
    num_steps: int = 0  # verification steps while decoding (for tokens per step)
    tpot_slo: float | None = None  # seconds per output token the scheduler should honour
    want_logprobs: bool = False

    @property
    def context(self) -> list[int]:
        """Tokens that must be in the cache before decoding: the prompt, then every output
        token but the last (the anchor); after a preemption this is what is recomputed."""
        return self.prompt_token_ids + self.output_token_ids[:-1]

    @property
    def anchor(self) -> int | None:
        return self.output_token_ids[-1] if self.output_token_ids else None

    @property
    def context_len(self) -> int:
        return len(self.prompt_token_ids) + max(len(self.output_token_ids) - 1, 0)

    @property
    def is_prefilling(self) -> bool:
        return self.num_computed < self.context_len

    @property
    def num_tokens(self) -> int:
        return len(self.prompt_token_ids) + len(self.output_token_ids)

    @property
    def remaining(self) -> int:
        """Tokens it may still emit."""
        return self.max_tokens - len(self.output_token_ids)
