"""The HTTP app of `cvml serve`: OpenAI-compatible and domain endpoints, probes, metrics, admin.

    ctx = ServeContext(pool, AppSettings(api_key="k"), request_log=RequestLog())
    app = create_app(ctx)          # uvicorn.run(app) — or `cvml serve`, which also drains on SIGTERM

Endpoints: POST /v1/chat/completions, POST /v1/completions, GET /v1/models,
POST /v1/cv/rewrite, POST /v1/feedback, GET /health, GET /ready, GET /metrics,
POST /admin/reload. Every error is OpenAI's envelope; every response carries
`x-request-id`, and generating ones `x-cvml-variant` (the A/B arm that served it).
With an API key set, /v1/* need `Authorization: Bearer KEY`; the probes and /metrics stay
open for the orchestrator. /admin/* take the admin key only, when one is set; without one
they answer loopback clients only (with the API key, when set). /docs and /openapi.json
exist only with `docs=True`. Bodies are limited by the bytes received (413), not by the
declared Content-Length alone; answers never show filesystem paths.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import logging
import uuid
from collections.abc import Callable
from typing import Any

import anyio
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException

from cvml import __version__
from cvml.errors import ConfigError, CvmlError
from cvml.modelio import ModelRef
from cvml.serve import openai_schema as api
from cvml.serve.completions import router as completions_router
from cvml.serve.errors import ApiError, public_message
from cvml.serve.metrics import CONTENT_TYPE
from cvml.serve.pool import ReloadOutcome
from cvml.serve.context import ServeContext

_log = logging.getLogger("cvml.serve")
# Probes answer even while draining, and are not requests a drain waits for.
PROBES = ("/health", "/ready", "/metrics")
MAX_BODY_BYTES = 4 * 1024 * 1024
_TYPE_TAGS = {"str", "int", "float", "bool", "list", "dict", "none", "json-or-python"}
_DOCUMENTED_ERRORS = {
    status: {"model": api.ErrorResponse, "description": description}
    for status, description in {
        400: "Bad input (the param names the field)", 401: "Missing or wrong API key",
        403: "Admin endpoint asked from off loopback with no admin key set",
        404: "Unknown model or request id", 409: "A reload failed (per-variant outcomes in `variants`)",
        413: "Body over the limit, text over the checked size, or prompt over the model's context",
        429: "Queue full (see Retry-After)", 503: "Loading or draining", 504: "Past the request deadline",
    }.items()
}


# ------------------------------------------------------------------------ middleware


class _BodyTooLarge(StarletteHTTPException):
    """Raised from `receive` once the bytes received pass the limit (FastAPI re-raises an
    HTTPException from body reading, so it reaches `_on_http_error` as a 413)."""

    code = "body_too_large"

    def __init__(self) -> None:
        super().__init__(413, f"the request body is over {MAX_BODY_BYTES} bytes")


class _RequestContext:
    """Pure ASGI middleware: request id, in-flight count, body limit, last-resort 500.

    Pure ASGI (not BaseHTTPMiddleware) so that streamed responses pass through untouched
    and a client disconnect still reaches the endpoint's stream. The body limit counts the
    bytes actually received (a chunked body declares no length): reading stops with a 413
    at the first message past the limit, so at most one chunk beyond it is ever held.
    """

    def __init__(self, app, ctx: ServeContext):
        self.app = app
        self.ctx = ctx

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        tracked = scope["path"] not in PROBES
        started = False
        status = 500

        async def send_with_id(message):
            nonlocal started, status
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                MutableHeaders(scope=message).append("x-request-id", request_id)
            await send(message)

        received = 0

        async def receive_limited():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > MAX_BODY_BYTES:
                    raise _BodyTooLarge()
            return message

        if tracked:
            self.ctx.inflight += 1
        try:
            if _declared_length(scope) > MAX_BODY_BYTES:
                raise _BodyTooLarge()
            await self.app(scope, receive_limited, send_with_id)
        except _BodyTooLarge as exc:  # raised outside FastAPI's body reading
            if not started:
                error = ApiError(413, exc.detail, code=exc.code)
                await error.response(request_id)(scope, receive, send_with_id)
        except Exception:
            _log.exception("request %s failed", request_id)
            if not started:
                error = ApiError(500, f"internal error (request id {request_id})", code="internal_error")
                await error.response(request_id)(scope, receive, send_with_id)
        finally:
            if tracked:
                self.ctx.inflight -= 1
            route = scope.get("route")
            self.ctx.metrics.http_requests.labels(getattr(route, "path", "unmatched"), str(status)).inc()


def _declared_length(scope) -> int:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 0
    return 0


# --------------------------------------------------------------------------- errors


def _request_id(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


async def _on_api_error(request: Request, exc: ApiError) -> JSONResponse:
    return exc.response(_request_id(request))


async def _on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """FastAPI's 422 becomes OpenAI's 400, naming the first offending field in `param`."""
    errors = exc.errors()
    first = errors[0] if errors else {"loc": ("body",), "msg": "invalid request"}
    loc = [str(part) for part in first.get("loc", ())[1:] if not _is_type_tag(part)]
    param = ".".join(loc) or None
    if first.get("type") == "json_invalid":
        param, message = None, "the body is not valid JSON"
    elif first.get("type") == "missing" and not loc:
        message = "a JSON body is required"
    else:
        detail = str(first.get("msg")).removeprefix("Value error, ")  # pydantic's prefix for a validator's message
        message = f"{param}: {detail}" if param else detail
    return ApiError(400, message, param=param, code="invalid_value").response(_request_id(request))


def _is_type_tag(part: object) -> bool:
    """pydantic puts the union member tried into `loc` ("str", "list[str]", "function-after[...]")."""
    return isinstance(part, str) and (part in _TYPE_TAGS or "[" in part or "-" in part)


async def _on_http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    message = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
    error = ApiError(exc.status_code, message, code=getattr(exc, "code", None), headers=exc.headers)
    return error.response(_request_id(request))


async def _on_cvml_error(request: Request, exc: CvmlError) -> JSONResponse:
    _log.error("request %s: %s", _request_id(request), exc)
    message = f"{exc.message} ({exc.hint})" if exc.hint else exc.message
    return ApiError(500, message, code=type(exc).__name__).response(_request_id(request))


# ------------------------------------------------------------------------ endpoints


def _context(request: Request) -> ServeContext:
    return request.app.state.cvml


async def _authorize(request: Request) -> None:
    """Bearer-token check on /v1 when an API key is set (constant-time compare)."""
    key = _context(request).settings.api_key
    if key is not None:
        _require_bearer(request, key, "API key", "invalid_api_key")


async def _authorize_admin(request: Request) -> None:
    """/admin/*: the admin key when one is set (the API key does not open it); without one,
    loopback clients only, with the API key when that is set."""
    admin_key = request.app.state.admin_key
    if admin_key is not None:
        _require_bearer(request, admin_key, "admin key", "invalid_admin_key")
        return
    client = request.client.host if request.client else None
    if not is_loopback(client):
        raise ApiError(
            403,
            "the admin endpoints answer loopback clients only; start the server with --admin-key "
            "(or CVML_ADMIN_KEY) to use them from elsewhere",
            code="admin_disabled",
        )
    await _authorize(request)


def _require_bearer(request: Request, key: str, what: str, code: str) -> None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), key.encode()):
        raise ApiError(
            401, f"missing or wrong {what}: send Authorization: Bearer <key>", code=code,
            headers={"www-authenticate": "Bearer"},
        )


def is_loopback(host: str | None) -> bool:
    """True for a loopback IP address (127.0.0.0/8, ::1, ::ffff:127.x); False for anything else."""
    if not host:
        return False
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or bool(mapped and mapped.is_loopback)


async def _not_draining(request: Request) -> None:
    ctx = _context(request)
    if ctx.pool.phase == "draining":
        ctx.require_ready()


probes = APIRouter()
api_router = APIRouter(dependencies=[Depends(_authorize), Depends(_not_draining)], responses=_DOCUMENTED_ERRORS)
admin_router = APIRouter(
    dependencies=[Depends(_authorize_admin), Depends(_not_draining)], responses=_DOCUMENTED_ERRORS
)


@probes.get("/health", summary="Liveness: the process answers")
async def health(request: Request) -> dict[str, Any]:
    return {"status": "ok", "phase": _context(request).pool.phase, "version": __version__}


@probes.get("/ready", summary="Readiness: every variant loaded and not draining (else 503)")
async def ready(request: Request):
    """200 once every variant is loaded, 503 while loading or draining.

    `request_log` is "ok", "off" (no log), or why the log cannot write: the server then
    still serves (200, `status` "degraded") and stores nothing of the requests; alert on
    it, or on the `cvml_request_log_degraded` metric.
    """
    ctx = _context(request)
    ctx.require_ready()
    body = {"status": "ready", "variants": {name: s.public_ref for name, s in ctx.pool.current.items()},
            "request_log": "off" if ctx.request_log is None else "ok"}  # fmt: skip
    reason = None if ctx.request_log is None else ctx.request_log.degraded
    if reason is not None:
        body.update(status="degraded", request_log=reason)
    return body


@probes.get("/metrics", summary="Prometheus metrics (vLLM's names where vLLM has one)")
async def metrics(request: Request) -> Response:
    ctx = _context(request)
    ctx.metrics.ready.set(1 if ctx.pool.ready else 0)
    ctx.metrics.observe_request_log(None if ctx.request_log is None else ctx.request_log.health())
    return Response(ctx.metrics.render(), media_type=CONTENT_TYPE)


@api_router.get(
    "/v1/models",
    response_model=api.ModelList,
    summary="Accepted `model` ids: variant names, given references, served versions, registry or folder names",
)
async def list_models(request: Request) -> api.ModelList:
    """Each id pins one variant, or (variant null) is shared by several and routed by the A/B split.

    A request without `model` is routed by the split too. An unregistered folder shows as
    its name; no id or ref is ever a filesystem path.
    """
    pool = _context(request).pool
    cards = []
    for model_id, variant in sorted(pool.model_ids().items()):
        served = pool.current.get(variant) if variant else None
        cards.append(
            api.ModelCard(
                id=model_id,
                created=int(served.loaded_at) if served else 0,
                variant=variant,
                ref=served.public_ref if served else None,
                version=served.model_ref.version if served else None,
            )
        )
    return api.ModelList(data=cards)


@api_router.get("/v1/models/{model_id:path}", response_model=api.ModelCard, summary="One accepted `model` id")
async def retrieve_model(model_id: str, request: Request) -> api.ModelCard:
    """The card `GET /v1/models` lists for this id; 404 `model_not_found` for any other."""
    for card in (await list_models(request)).data:
        if card.id == model_id:
            return card
    raise ApiError(404, f"the model {model_id!r} does not exist", param="model", code="model_not_found")


@api_router.post(
    "/v1/feedback", response_model=api.FeedbackResponse, summary="The user's verdict on a response (A/B outcome)"
)
async def feedback(body: api.FeedbackRequest, request: Request) -> api.FeedbackResponse:
    log = _context(request).request_log
    if log is None:
        raise ApiError(404, "this server keeps no request log", code="request_not_found", param="request_id")
    found = await anyio.to_thread.run_sync(
        lambda: log.feedback(body.request_id, accepted=body.accepted, rating=body.rating, edited_text=body.edited_text)
    )
    if not found:
        raise ApiError(404, f"no request with id {body.request_id!r}", param="request_id", code="request_not_found")
    return api.FeedbackResponse(request_id=body.request_id)


@admin_router.post(
    "/admin/reload",
    summary="Re-resolve each variant's reference; load and swap what changed (409 when one fails)",
)
async def reload(request: Request) -> dict[str, Any]:
    """Per variant: "swapped" (previous → current), "unchanged" or "failed" (with its error).

    Every variant is tried, whatever fails: a variant that fails keeps serving what it
    served and the others are swapped all the same. With any failure the answer is a 409
    whose `variants` lists every outcome.
    """
    ctx = _context(request)
    ctx.require_ready()
    outcomes = await ctx.pool.reload()
    note_reloads(ctx, outcomes)
    variants = [
        {key: public_message(value) if isinstance(value, str) else value for key, value in o.to_dict().items()}
        for o in outcomes
    ]
    failed = [o for o in outcomes if o.outcome == "failed"]
    if failed:
        summary = "; ".join(
            f"{o.variant}: {o.error}" if o.outcome == "failed" else f"{o.variant}: {o.outcome} ({o.current})"
            for o in outcomes
        )
        raise ApiError(
            409, f"reload failed for {len(failed)} variant(s); {summary}", code="reload_failed",
            extra={"variants": variants},
        )
    return {"variants": variants}


def _log_crash(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        _log.error("background task %s failed", task.get_name(), exc_info=task.exception())


def note_reloads(ctx: ServeContext, outcomes: list[ReloadOutcome]) -> None:
    """Count reload outcomes and point `cvml_model_info` at what each variant serves now."""
    for outcome in outcomes:
        ctx.metrics.reloads.labels(outcome.variant, outcome.outcome).inc()
    publish_models(ctx)


def publish_models(ctx: ServeContext) -> None:
    for name, served in ctx.pool.current.items():
        ctx.metrics.set_model(name, served.public_ref, served.model_ref.version)


# ---------------------------------------------------------------------------- factory


def create_app(
    ctx: ServeContext,
    *,
    refs: dict[str, ModelRef] | None = None,
    watch_registry_s: float | None = None,
    on_ready: Callable[[], None] | None = None,
    on_load_failed: Callable[[BaseException], None] | None = None,
    admin_key: str | None = None,
    docs: bool = False,
) -> FastAPI:
    """The ASGI app. Its lifespan loads the models in the background (so /health answers and
    /ready says 503 meanwhile), optionally watches the registry, and stops the engines on exit.

    Args:
        ctx: the shared state (models, settings, log).
        refs: each variant's resolved version, when the caller resolved them already.
        watch_registry_s: poll each variant's reference this often and reload what changed.
        on_ready: called once every variant is loaded.
        on_load_failed: called when the initial load fails (the server then exits with it).
        admin_key: the only key /admin/* accept; None: /admin/* answer loopback clients only.
        docs: serve /docs and /openapi.json (off by default: they map the whole API).

    Raises:
        ConfigError: an empty API or admin key (empty is a mistake, never "no auth").
    """
    for name, key in (("API key", ctx.settings.api_key), ("admin key", admin_key)):
        if key is not None and not key.strip():
            raise ConfigError(f"the {name} is empty", hint="give a non-empty key, or none at all")

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        tasks = []
        loop = asyncio.get_running_loop()

        async def load() -> None:
            try:
                if not ctx.pool.current:
                    await ctx.pool.load(refs)
                publish_models(ctx)
                if on_ready is not None:
                    on_ready()
            except Exception as exc:
                _log.error("loading the models failed: %s", exc)
                if on_load_failed is not None:
                    on_load_failed(exc)

        tasks.append(loop.create_task(load()))
        if watch_registry_s:
            tasks.append(loop.create_task(ctx.pool.watch(watch_registry_s, lambda o: note_reloads(ctx, o))))
        for task in tasks:
            task.add_done_callback(_log_crash)
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await ctx.pool.close()
            if ctx.request_log is not None:
                await anyio.to_thread.run_sync(ctx.request_log.close)

    app = FastAPI(
        title="cvml serve",
        version=__version__,
        summary="OpenAI-compatible inference with A/B routing for CV-rewriting models.",
        lifespan=lifespan,
        openapi_url="/openapi.json" if docs else None,
        docs_url="/docs" if docs else None,
        redoc_url=None,
    )
    app.state.cvml = ctx
    app.state.admin_key = admin_key
    app.include_router(probes)
    app.include_router(api_router)
    app.include_router(admin_router)
    app.include_router(
        completions_router, dependencies=[Depends(_authorize), Depends(_not_draining)], responses=_DOCUMENTED_ERRORS
    )
    app.add_exception_handler(ApiError, _on_api_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(CvmlError, _on_cvml_error)
    app.add_middleware(_RequestContext, ctx=ctx)
    return app

