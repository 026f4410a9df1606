"""What passes between the HTTP layer (or bench's load generator) and the engine.

The engine runs generation on its own thread; callers submit a `GenerationRequest` and
read `TokenEvent`s from the returned handle. These types are the whole contract, so the
HTTP app, bench and tests never reach into the scheduler.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from cvml.errors import CvmlError

FINISH_REASONS = ("stop", "length", "cancelled", "deadline", "error")


@dataclass(frozen=True)
class SamplingParams:
    """Decoding settings of one request. temperature 0 is greedy (deterministic).

    `stop` strings end the text before the first match (the match itself is not returned).
    `ignore_eos` masks the end-of-sequence tokens so exactly `max_new_tokens` come out
    (benchmarks; `model.generate(min_new_tokens=max_new_tokens)` does the same).
    `repetition_penalty` None takes the model's generation config (1.0 when it has none), so
    a greedy request returns what `model.generate(do_sample=False)` returns.
    """

    max_new_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    ignore_eos: bool = False
    repetition_penalty: float | None = None


@dataclass
class GenerationRequest:
    prompt_ids: list[int]
    params: SamplingParams = field(default_factory=SamplingParams)
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    # time.monotonic() after which the request is abandoned (finish_reason "deadline").
    deadline: float | None = None
    arrival: float = field(default_factory=time.monotonic)
    # A token constraint the engine applies after sampling's penalties (grounded decoding:
    # `cvml.safety.grounding.GroundingConstraint`); None leaves the request free.
    constraint: Any = None


@dataclass(frozen=True)
class TokenEvent:
    """New text of one request. The last event of a request has `finished` set."""

    text: str
    token_ids: tuple[int, ...] = ()
    finished: bool = False
    finish_reason: str | None = None  # one of FINISH_REASONS when finished
    error: str | None = None  # the message when finish_reason is "error"


@dataclass
class RequestStats:
    """Timestamps (time.monotonic) and counts of one request, filled in by the engine."""

    arrival: float
    prompt_tokens: int
    scheduled_at: float | None = None  # joined a running batch (left the queue)
    first_token_at: float | None = None
    finished_at: float | None = None
    completion_tokens: int = 0
    token_times: list[float] = field(default_factory=list)
    finish_reason: str | None = None

    @property
    def queue_s(self) -> float | None:
        return None if self.scheduled_at is None else self.scheduled_at - self.arrival

    @property
    def ttft_s(self) -> float | None:
        return None if self.first_token_at is None else self.first_token_at - self.arrival

    @property
    def e2e_s(self) -> float | None:
        return None if self.finished_at is None else self.finished_at - self.arrival

    @property
    def inter_token_s(self) -> list[float]:
        t = self.token_times
        return [b - a for a, b in zip(t, t[1:])]


@dataclass(frozen=True)
class GenerationResult:
    """The whole answer to one request, as `RequestHandle.result()` returns it."""

    request_id: str
    text: str
    token_ids: tuple[int, ...]
    finish_reason: str  # one of FINISH_REASONS
    stats: RequestStats
    error: str | None = None  # the message when finish_reason is "error"


class EngineError(CvmlError):
    """The engine cannot take a request; the HTTP layer maps each subclass to a status code."""

    status_code = 500


class QueueFullError(EngineError):
    """Admission control: the waiting queue is at its bound (HTTP 429 with Retry-After)."""

    status_code = 429

    def __init__(self, message: str, retry_after_s: float = 1.0):
        super().__init__(message, hint="Retry after the indicated delay, or raise --max-queue.")
        self.retry_after_s = retry_after_s


class PromptTooLongError(EngineError):
    """Prompt plus max_new_tokens exceeds the model's context (HTTP 413)."""

    status_code = 413


class EngineUnavailableError(EngineError):
    """Not started, loading, or draining for shutdown (HTTP 503)."""

    status_code = 503


class InvalidRequestError(EngineError):
    """The request itself is malformed: empty prompt, a token id outside the vocabulary,
    or sampling settings out of range (HTTP 400)."""

    status_code = 400
