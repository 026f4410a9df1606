"""HTTP errors of `cvml serve`, all in OpenAI's envelope {"error": {message, type, param, code}}.

Handlers raise `ApiError`; engine errors (`cvml.serve.types.EngineError`) and unknown
models are turned into one here, so the status code of every failure is decided in one
table rather than at each raise.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from fastapi.responses import JSONResponse

from cvml.serve.openai_schema import error_body
from cvml.serve.types import (
    EngineError,
    EngineUnavailableError,
    InvalidRequestError,
    PromptTooLongError,
    QueueFullError,
)

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "conflict_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    503: "service_unavailable_error",
    504: "timeout_error",
}


class ApiError(Exception):
    """An HTTP error response: status, OpenAI error fields, extra headers."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})  # top-level fields beside "error" (e.g. per-variant outcomes)

    def response(self, request_id: str | None = None) -> JSONResponse:
        body = error_body(public_message(self.message), error_type(self.status), self.param, self.code, request_id)
        return JSONResponse({**body, **self.extra}, status_code=self.status, headers=self.headers)


# An absolute path of two or more parts (POSIX, ~/, or C:\), not one of the API's own routes.
_PATH = re.compile(
    r"(?<![\w.:/])(?:~|[A-Za-z]:)?[/\\](?!(?:v1|admin)/)(?:[^\s'\"/\\<>|:,;()]+[/\\])+([^\s'\"/\\<>|:,;()]*)"
)


def public_message(message: str) -> str:
    """A message fit for a client: every filesystem path shortened to its last part (…/name)."""
    return _PATH.sub(lambda m: f".../{m.group(1)}" if m.group(1) else "...", message)


def error_type(status: int) -> str:
    return ERROR_TYPES.get(status, "invalid_request_error" if status < 500 else "server_error")


def context_exceeded(
    context: int, prompt_tokens: int, asked: int | None, param: str, headers: Mapping[str, str] | None = None
) -> ApiError:
    """OpenAI's 400 for a request that does not fit the context, in the words clients parse
    ("maximum context length is N tokens") to fall back to a larger model."""
    where = "the messages" if param == "messages" else f"the {param}"
    if asked:
        message = (f"This model's maximum context length is {context} tokens. However, you requested "
                   f"{prompt_tokens + asked} tokens ({prompt_tokens} in {where}, {asked} in the completion). "
                   f"Please reduce the length of {where} or completion.")
    else:
        message = (f"This model's maximum context length is {context} tokens. However, {where} resulted in "
                   f"{prompt_tokens} tokens. Please reduce the length of {where}.")
    return ApiError(400, message, param=param, code="context_length_exceeded", headers=dict(headers or {}))


def from_engine_error(exc: EngineError, prompt_param: str, headers: Mapping[str, str] | None = None) -> ApiError:
    """The response an engine's refusal becomes (400 naming `prompt_param`, 429 with Retry-After, 503)."""
    headers = dict(headers or {})
    if isinstance(exc, QueueFullError):
        headers["retry-after"] = str(max(1, round(exc.retry_after_s)))
        return ApiError(429, str(exc), code="queue_full", headers=headers)
    if isinstance(exc, PromptTooLongError):
        return ApiError(400, str(exc), param=prompt_param, code="context_length_exceeded", headers=headers)
    if isinstance(exc, InvalidRequestError):
        return ApiError(400, str(exc), param=prompt_param, code="invalid_value", headers=headers)
    if isinstance(exc, EngineUnavailableError):
        return ApiError(503, str(exc), code="unavailable", headers=headers)
    return ApiError(500, str(exc), code="engine_error", headers=headers)
