"""What every endpoint shares: the models, the settings, the request log, the metrics and
the drain state. The app (`cvml.serve.app`) builds the routes; the endpoints
(`cvml.serve.completions`, ...) read this, so neither imports the other."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio

from cvml.errors import CvmlError
from cvml.serve.errors import ApiError
from cvml.serve.metrics import ServeMetrics
from cvml.serve.pool import ModelPool, ServedModel, UnknownModelError
from cvml.serve.requestlog import LogEntry, RequestLog

_log = logging.getLogger("cvml.serve")


@dataclass
class AppSettings:
    """What the HTTP layer needs to know beyond the models.

    Attributes:
        api_key: required as `Authorization: Bearer ...` on /v1 and /admin when set.
        max_new_tokens: default and cap of new tokens per request.
        request_timeout_s: per-request deadline (504 past it).
        grounding, guard, guard_retries: the rewrite's defaults (`serve.grounding`, ...).
    """

    api_key: str | None = None
    max_new_tokens: int = 128
    request_timeout_s: float = 30.0
    grounding: str = "strict"
    guard: str = "retry"
    guard_retries: int = 2


class ServeContext:
    """Everything the endpoints share: models, settings, request log, metrics, drain state.

    Args:
        pool: the variants' models and the A/B router.
        settings: auth, token cap, deadline.
        request_log: where every generating request is recorded (None: not recorded).
        checks: (output, source, job_description) → {"pii_leak": ..., "fabrication": ...};
            default `cvml.serve.checks.run_checks`.
    """

    def __init__(
        self,
        pool: ModelPool,
        settings: AppSettings,
        request_log: RequestLog | None = None,
        checks: Callable[[str, str, str | None], dict[str, Any]] | None = None,
    ):
        if checks is None:
            from cvml.serve.checks import run_checks as checks

        self.pool = pool
        self.settings = settings
        self.request_log = request_log
        self.run_checks = _with_input_figures(checks)
        self.metrics = ServeMetrics(pool.engine_load)
        self.inflight = 0

    def pick(self, model_id: str | None, user_id: str | None) -> ServedModel:
        """The model for a request (503 unless ready, 404 for an unknown id)."""
        self.require_ready()
        try:
            return self.pool.pick(model_id, user_id)
        except UnknownModelError as exc:
            raise ApiError(404, f"{exc.message} ({exc.hint})", param="model", code="model_not_found") from None

    def require_ready(self) -> None:
        phase = self.pool.phase
        if phase == "ready":
            return
        message = {
            "loading": "the model is loading; retry when GET /ready answers 200",
            "draining": "the server is shutting down and takes no new requests",
            "failed": "the model failed to load",
        }[phase]
        raise ApiError(503, message, code=phase, headers={"retry-after": "1"} if phase == "loading" else None)

    def record(self, entry: LogEntry) -> None:
        if self.request_log is None:
            return
        try:
            self.request_log.record(entry)
        except CvmlError:
            _log.exception("request %s not logged", entry.request_id)

    # ---------------------------------------------------------------------------- drain

    def begin_drain(self) -> None:
        """Refuse new requests from now on (503) and report not ready; in-flight ones go on."""
        if self.pool.phase in ("loading", "ready"):
            self.pool.phase = "draining"
        self.metrics.ready.set(0)

    async def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no request is in flight, at most `timeout_s`; True when idle."""
        with anyio.move_on_after(timeout_s):
            while self.inflight > 0:
                await asyncio.sleep(0.05)
        return self.inflight == 0


def _with_input_figures(checks: Callable[[str, str, str | None], dict[str, Any]]):
    """The checks, their result extended with the inputs' sizes for the request log
    (`cvml.serve.checks.input_figures`; the response's `checks` leaves them out)."""
    from cvml.serve.checks import INPUTS, input_figures

    def run(output: str, source: str, job_description: str | None) -> dict[str, Any]:
        result = checks(output, source, job_description)
        if isinstance(result, dict):
            result = {**result, INPUTS: input_figures(source, job_description)}
        return result

    return run
