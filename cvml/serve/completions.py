"""The generating endpoints: chat and text completions (OpenAI), and the CV rewrite.

All three run the same path: pick the variant's model (A/B), build the prompt with the
model's own chat template, take a lease on the model, submit to its engine, stream or
collect the tokens, then record the request (log + metrics) exactly once, whatever way
it ends: finished, refused, past its deadline, or abandoned by the client. A client that
leaves aborts its generation, streamed or not: a non-streamed request watches for the
ASGI `http.disconnect` while it waits on the engine.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import jinja2
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.background import BackgroundTask

from cvml.prompts import render_chat
from cvml.serve import openai_schema as api
from cvml.serve.context import ServeContext
from cvml.serve.errors import ApiError, context_exceeded, error_type, from_engine_error, public_message
from cvml.serve.guard import GuardOutcome, retry_params
from cvml.serve.pool import ServedModel
from cvml.serve.requestlog import LogEntry, engine_figures
from cvml.serve.types import EngineError, GenerationRequest, SamplingParams, TokenEvent

OPENAI_TEMPERATURE = 1.0  # OpenAI's default when a request names none
CLIENT_GONE = 499  # logged status of a request whose client disconnected (nginx's convention)
_FAILED_FINISH = {
    "deadline": (504, "deadline_exceeded", "the request passed its deadline of {timeout:g} s"),
    "cancelled": (503, "cancelled", "the generation was cancelled: the server is shutting down"),
    "error": (500, "engine_error", "the engine failed on this request: {error}"),
}

router = APIRouter()


class Generation:
    """One request on one served model: the engine handle, the lease, and the record.

    `open()` leases the model and submits; `close()` cancels what still runs, returns the
    lease, and records the request. `close()` is idempotent, so every exit path may call it.
    """

    def __init__(
        self,
        ctx: ServeContext,
        request: Request,
        served: ServedModel,
        endpoint: str,
        prompt_ids: list[int],
        params: SamplingParams,
        *,
        prompt_param: str,
        user_id: str | None,
        input_text: str | None,
        task: str | None = None,
        constraint: Callable[[int], Any] | None = None,
        asked_tokens: int | None = None,
    ):
        self.ctx = ctx
        self.served = served
        self.endpoint = endpoint
        self.request_id: str = request.state.request_id
        self.prompt_ids = prompt_ids
        self.params = params
        self.prompt_param = prompt_param
        self.user_id = user_id
        self.input_text = input_text
        self.task = task
        self.make_constraint = constraint  # max_new_tokens -> a fresh token constraint per attempt
        self.asked_tokens = asked_tokens  # the client's own max_tokens (a default cap is no ask)
        self.constraint: Any = None
        self.earlier_tokens = 0  # completion tokens of the attempts before the current one
        self.handle: Any = None
        self.finish_reason: str | None = None
        self.deadline: float | None = None  # time.monotonic() past which the request is 504
        self._closed = False
        self._leased = False

    @property
    def headers(self) -> dict[str, str]:
        return {"x-cvml-variant": self.served.variant, "x-cvml-model": self.served.public_ref}

    def open(self) -> None:
        """Lease the model and submit the request to its engine.

        Raises:
            ApiError: the request does not fit the context (400), the engine refuses (429,
                503); the refusal is recorded.
        """
        self.deadline = time.monotonic() + self.ctx.settings.request_timeout_s
        self.ctx.pool.acquire(self.served)
        self._leased = True
        context, prompt = self.served.context_length, len(self.prompt_ids)
        if prompt >= context or (self.asked_tokens and prompt + self.asked_tokens > context):
            error = context_exceeded(context, prompt, self.asked_tokens, self.prompt_param, self.headers)
            self.close(error.status, error=error.message)
            raise error
        self._submit()

    def resubmit(self, params: SamplingParams) -> None:
        """Generate again (the retry guard), under the same lease, deadline and record.

        Raises:
            ApiError: the engine refuses; the refusal is recorded.
        """
        self.earlier_tokens += self.handle.stats.completion_tokens
        self._note_refused()
        self.params, self.finish_reason = params, None
        self._submit()

    def _submit(self) -> None:
        self.constraint = self.make_constraint(self.params.max_new_tokens) if self.make_constraint else None
        try:
            self.handle = self.served.engine.submit(
                GenerationRequest(self.prompt_ids, self.params, request_id=self.request_id, deadline=self.deadline,
                                  constraint=self.constraint)
            )
        except EngineError as exc:
            error = from_engine_error(exc, self.prompt_param, self.headers)
            self.close(error.status, error=error.message)
            raise error from None

    async def events(self) -> AsyncIterator[TokenEvent]:
        async for event in self.handle:
            if event.finished:
                self.finish_reason = event.finish_reason
            yield event

    def failure(self, event: TokenEvent) -> ApiError | None:
        """The error a finished event stands for (deadline → 504, ...), None when it succeeded."""
        if event.finish_reason not in _FAILED_FINISH:
            return None
        status, code, message = _FAILED_FINISH[event.finish_reason]
        text = message.format(timeout=self.ctx.settings.request_timeout_s, error=event.error or "unknown error")
        return ApiError(status, text, code=code, headers=self.headers)

    async def collect(self) -> str:
        """The whole generated text.

        Raises:
            ApiError: the generation ended past its deadline (504), on an engine error
                (500) or was cancelled by a shutdown (503).
        """
        pieces = []
        async for event in self.events():
            pieces.append(event.text)
            if event.finished and (error := self.failure(event)) is not None:
                raise error
        return "".join(pieces)

    def usage(self) -> api.Usage:
        stats = self.handle.stats
        prompt, completion = stats.prompt_tokens, stats.completion_tokens + self.earlier_tokens
        return api.Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)

    def _note_refused(self) -> None:
        if self.constraint is not None and self.constraint.refused:
            labels = (self.served.public_ref, self.served.variant)
            self.ctx.metrics.grounding_refused.labels(*labels).inc(self.constraint.refused)
            self.constraint.refused = 0

    def close(
        self,
        status: int,
        *,
        output: str | None = None,
        error: str | None = None,
        checks: dict[str, Any] | None = None,
    ) -> None:
        """End the request: cancel what still runs, return the lease, record it (once)."""
        if self._closed:
            return
        self._closed = True
        if self.handle is not None and self.finish_reason is None:
            self.handle.cancel()
        if self._leased:
            self.ctx.pool.release(self.served)
        figures: dict[str, Any] = {}
        if self.handle is not None:
            stats = self.handle.stats
            figures = engine_figures(stats)
            figures["finish_reason"] = self.finish_reason or stats.finish_reason or "cancelled"
            if stats.finished_at is not None:
                self.ctx.metrics.observe(self.served.variant, self.served.public_ref, stats)
            else:
                self.ctx.metrics.observe_unfinished(self.served.variant, self.served.public_ref, stats)
        self._note_refused()
        if checks is not None:
            for name, check in checks.items():
                if isinstance(check, dict) and check.get("flagged"):
                    self.ctx.metrics.checks_flagged.labels(self.served.public_ref, self.served.variant, name).inc()
        self.ctx.record(
            LogEntry(
                request_id=self.request_id,
                endpoint=self.endpoint,
                status=status,
                experiment=self.ctx.pool.experiment,
                variant=self.served.variant,
                model_ref=self.ctx.pool.variants[self.served.variant].ref,
                model_version=self.served.served_ref,
                user_id=self.user_id,
                task=self.task,
                input_text=self.input_text,
                output_text=output,
                error=error,
                pii_leak=None if checks is None else checks["pii_leak"]["flagged"],
                fabrication=None if checks is None else checks["fabrication"]["flagged"],
                checks=checks,
                **figures,
            )
        )

    async def run_to_text(self, request: Request, params: SamplingParams | None = None) -> str:
        """open + collect (`params`: resubmit with them instead, for a retry), recording a
        failure on the way out (the caller closes on success).

        While it waits on the engine it watches the connection: a client that leaves
        aborts the generation at once (the engine drops it at its next step).

        Raises:
            ApiError: as `collect`, or 499 when the client disconnected (nobody reads it).
        """
        if params is None:
            self.open()
        else:
            self.resubmit(params)
        text: str | None = None
        failure: Exception | None = None
        gone = False
        try:
            async with anyio.create_task_group() as group:

                async def watch() -> None:
                    nonlocal gone
                    await _disconnected(request)
                    gone = True
                    group.cancel_scope.cancel()

                group.start_soon(watch)
                try:  # nothing may escape the group but cancellation (it would come out as a group)
                    text = await self.collect()
                except Exception as exc:
                    failure = exc
                finally:
                    group.cancel_scope.cancel()
        except BaseException as exc:  # cancelled from outside (shutdown)
            self.close(CLIENT_GONE if _is_cancellation(exc) else 500, error=repr(exc))
            raise
        if isinstance(failure, ApiError):
            self.close(failure.status, error=failure.message)
            raise failure
        if failure is not None:
            self.close(500, error=repr(failure))
            raise failure
        if gone or text is None:
            self.close(CLIENT_GONE, error="client disconnected")
            raise ApiError(CLIENT_GONE, "the client disconnected", code="client_disconnected", headers=self.headers)
        return text


# ------------------------------------------------------------------------------ prompts


def chat_prompt_ids(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    """Render messages with the model's chat template and tokenize them the way training did.

    Raises:
        ApiError: the template refuses the conversation (400).
    """
    try:
        text = render_chat(tokenizer, messages)
    except (jinja2.TemplateError, ValueError) as exc:
        raise ApiError(400, f"the model's chat template refuses these messages: {exc}", param="messages") from None
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def text_prompt_ids(tokenizer: Any, prompt: str | list[int]) -> list[int]:
    """A completion prompt's ids (given ids are checked against the vocabulary by the engine)."""
    if isinstance(prompt, str):
        return list(tokenizer(prompt)["input_ids"])
    return list(prompt)


def sampling(
    ctx: ServeContext, body: Any, prompt_len: int, context_length: int, default_temperature: float
) -> SamplingParams:
    """Decoding settings: max tokens capped by the server; unset, they fill the context left."""
    cap = ctx.settings.max_new_tokens
    asked = body.new_tokens()
    # An explicit ask beyond the context is the client's error (400, see Generation.open); a default just fits.
    max_new = min(asked, cap) if asked else max(1, min(cap, context_length - prompt_len))
    temperature = body.temperature if body.temperature is not None else default_temperature
    return SamplingParams(
        max_new_tokens=max_new,
        temperature=temperature,
        top_p=getattr(body, "top_p", None) or 1.0,
        seed=body.seed,
        stop=body.stop_sequences(),
        ignore_eos=getattr(body, "ignore_eos", False),
        repetition_penalty=getattr(body, "repetition_penalty", None),
    )


def _both(grounding: Callable[[int], Any] | None, schema: Callable[[int], Any] | None) -> Callable[[int], Any] | None:
    """One constraint factory for a grounded rewrite that is also JSON: a token must pass both."""
    if grounding is None or schema is None:
        return grounding or schema
    from cvml.serve.structured import AllOf

    return lambda max_new_tokens: AllOf(schema(max_new_tokens), grounding(max_new_tokens))


def _refuse_unsupported(body: api.SamplingFields) -> None:
    """A field that would change the answer is never silently ignored (tools, logprobs, ...).

    Raises:
        ApiError: 400 naming the field.
    """
    name = body.unsupported()
    if name is not None:
        raise ApiError(400, f"{name} is not supported by cvml serve; send the request without it", param=name,
                       code="unsupported_parameter")


async def _response_format(served: ServedModel, body: Any) -> Callable[[int], Any] | None:
    """What makes each attempt's grammar constraint for `response_format` (None: free text).

    Raises:
        ApiError: 400 when the schema cannot be enforced, or the engine cannot constrain
            decoding (vLLM behind cvml: send the request to vLLM's own server).
    """
    fmt = body.response_format
    if fmt is None or fmt.type == "text":
        return None
    if not getattr(served.engine, "supports_constraints", False):
        raise ApiError(400, "response_format is enforced by cvml's engine; this model is served by another",
                       param="response_format", code="unsupported_value")
    from cvml.serve.structured import grammar_constraint

    spec = fmt.model_dump(by_alias=True)
    vocab = getattr(served.engine, "vocab_size", len(served.tokenizer))
    eos = getattr(served.engine, "eos_ids", ())
    try:
        first = await anyio.to_thread.run_sync(grammar_constraint, served.tokenizer, vocab, spec, eos)
    except EngineError as exc:
        raise ApiError(400, str(exc), param="response_format", code="invalid_value") from None
    used = [first]

    def make(max_new_tokens: int):  # the first attempt reuses the compiled one; a retry compiles from cache
        return used.pop() if used else grammar_constraint(served.tokenizer, vocab, spec, eos)

    return make


def _chat_messages(body: api.ChatCompletionRequest) -> list[dict[str, str]]:
    # "developer" is OpenAI's newer name for the system role; chat templates know "system".
    return [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in body.messages]


# ---------------------------------------------------------------------------- endpoints


@router.post(
    "/v1/chat/completions",
    response_model=api.ChatCompletion,
    summary="OpenAI chat completion (SSE stream with stream: true)",
)
async def chat_completions(body: api.ChatCompletionRequest, request: Request):
    ctx: ServeContext = request.app.state.cvml
    _refuse_unsupported(body)
    served = ctx.pick(body.model, body.user)
    messages = _chat_messages(body)
    prompt_ids = await anyio.to_thread.run_sync(chat_prompt_ids, served.tokenizer, messages)
    params = sampling(ctx, body, len(prompt_ids), served.context_length, OPENAI_TEMPERATURE)
    schema = await _response_format(served, body)
    gen = Generation(
        ctx, request, served, "/v1/chat/completions", prompt_ids, params,
        prompt_param="messages", user_id=body.user, input_text="\n".join(m["content"] for m in messages),
        constraint=schema, asked_tokens=body.new_tokens(),
    )
    if body.stream:
        gen.open()
        return _sse(gen, _chat_chunks(gen, body.include_usage))
    text = await gen.run_to_text(request)
    gen.close(200, output=text)
    completion = api.ChatCompletion(
        id=f"chatcmpl-{gen.request_id}",
        created=int(time.time()),
        model=served.public_ref,
        choices=[
            api.ChatChoice(message=api.AssistantMessage(content=text), finish_reason=_openai_finish(gen.finish_reason))
        ],
        usage=gen.usage(),
    )
    return JSONResponse(completion.model_dump(), headers=gen.headers)


@router.post(
    "/v1/completions", response_model=api.Completion, summary="OpenAI text completion (SSE stream with stream: true)"
)
async def completions(body: api.CompletionRequest, request: Request):
    ctx: ServeContext = request.app.state.cvml
    _refuse_unsupported(body)
    served = ctx.pick(body.model, body.user)
    prompt_ids = await anyio.to_thread.run_sync(text_prompt_ids, served.tokenizer, body.prompt)
    params = sampling(ctx, body, len(prompt_ids), served.context_length, OPENAI_TEMPERATURE)
    gen = Generation(
        ctx, request, served, "/v1/completions", prompt_ids, params,
        prompt_param="prompt", user_id=body.user, input_text=body.prompt if isinstance(body.prompt, str) else None,
        asked_tokens=body.new_tokens(),
    )
    if body.stream:
        gen.open()
        return _sse(gen, _completion_chunks(gen, body.include_usage))
    text = await gen.run_to_text(request)
    gen.close(200, output=text)
    completion = api.Completion(
        id=f"cmpl-{gen.request_id}",
        created=int(time.time()),
        model=served.public_ref,
        choices=[api.CompletionChoice(text=text, finish_reason=_openai_finish(gen.finish_reason))],
        usage=gen.usage(),
    )
    return JSONResponse(completion.model_dump(), headers=gen.headers)


@router.post(
    "/v1/cv/rewrite",
    response_model=api.RewriteResponse,
    summary="Rewrite CV text for a task; the answer carries its variant, version and safety checks",
)
async def rewrite(body: api.RewriteRequest, request: Request):
    ctx: ServeContext = request.app.state.cvml
    if body.checked_chars > api.MAX_REWRITE_CHARS:
        raise ApiError(
            413,
            f"text and job_description hold {body.checked_chars} characters; the safety checks take at most "
            f"{api.MAX_REWRITE_CHARS}: send a section at a time",
            param="text", code="text_too_long",
        )
    served = ctx.pick(body.model, body.user_id)
    grounding = body.grounding or ctx.settings.grounding
    if not getattr(served.engine, "supports_constraints", False):
        grounding = "off"  # an engine that cannot constrain decoding (vLLM): the guard still checks
    prompt_ids, make_constraint = await anyio.to_thread.run_sync(_rewrite_prompt, served, body, grounding)
    make_constraint = _both(make_constraint, await _response_format(served, body))
    params = sampling(ctx, body, len(prompt_ids), served.context_length, 0.0)
    source = body.text if body.job_description is None else f"{body.text}\n{body.job_description}"
    gen = Generation(
        ctx, request, served, "/v1/cv/rewrite", prompt_ids, params,
        prompt_param="text", user_id=body.user_id, input_text=source, task=body.task, constraint=make_constraint,
        asked_tokens=body.new_tokens(),
    )
    outcome = GuardOutcome(body.guard or ctx.settings.guard, grounding)
    output = await gen.run_to_text(request)
    checks = await _checked(gen, output, body)
    outcome.observe(checks)
    seed = body.seed if body.seed is not None else int(gen.request_id.encode().hex()[:15], 16)
    while outcome.should_retry(ctx.settings.guard_retries, gen.deadline):
        output = await gen.run_to_text(request, retry_params(params, outcome.attempts, seed))
        checks = await _checked(gen, output, body)
        outcome.observe(checks)
    guard = outcome.to_dict()
    gen.close(200, output=output, checks={**checks, "guard": guard})
    ctx.metrics.guard.labels(served.public_ref, served.variant, outcome.action).inc()
    response = api.RewriteResponse(
        output=body.text if outcome.action == "blocked" else output,
        model=served.model_ref.name,
        version=served.model_ref.version,
        variant=served.variant,
        request_id=gen.request_id,
        finish_reason=_openai_finish(gen.finish_reason),
        usage=gen.usage(),
        checks=api.Checks.model_validate(checks),
        guard=api.Guard.model_validate(guard),
    )
    return JSONResponse(response.model_dump(), headers=gen.headers)


def _rewrite_prompt(served: ServedModel, body: api.RewriteRequest, grounding: str):
    """The rewrite's prompt ids, and what makes each attempt's grounding constraint (None: off).

    Injected instructions in the text or job description ("ignore previous instructions",
    chat role tags) are cut out of the prompt, so they never reach the instruction part;
    the checks still read the inputs as sent and report them."""
    from cvml.prompts import build_messages
    from cvml.safety.harmful import neutralise_injections

    text = neutralise_injections(body.text)[0]
    job = neutralise_injections(body.job_description)[0] if body.job_description else body.job_description
    prompt_ids = chat_prompt_ids(served.tokenizer, build_messages(body.task, text or body.text, job))
    if grounding == "off":
        return prompt_ids, None
    from cvml.safety.grounding import GroundingConstraint, grounding_facts, token_table

    table = token_table(served.tokenizer, getattr(served.engine, "eos_ids", None))
    facts = grounding_facts(body.text, body.job_description, grounding)
    return prompt_ids, lambda max_new_tokens: GroundingConstraint(table, facts, max_new_tokens)


async def _checked(gen: Generation, output: str, body: api.RewriteRequest) -> dict[str, Any]:
    """The safety checks of a rewrite, in a worker thread, within what is left of the deadline.

    No answer goes out unchecked: checks that outlast the deadline make a 504 (their thread
    runs on to its end, which the size cap on the texts bounds).

    Raises:
        ApiError: 504 past the deadline; anything else the checks raise (a 500), recorded.
    """
    ctx = gen.ctx
    remaining = max(0.0, gen.deadline - time.monotonic()) if gen.deadline is not None else None
    try:
        with anyio.move_on_after(remaining):
            return await anyio.to_thread.run_sync(
                ctx.run_checks, output, body.text, body.job_description, abandon_on_cancel=True
            )
    except BaseException as exc:
        gen.close(CLIENT_GONE if _is_cancellation(exc) else 500, output=output, error=repr(exc))
        raise
    timeout = ctx.settings.request_timeout_s  # only a cancelled scope gets here: past the deadline
    error = ApiError(
        504, f"the safety checks passed the request deadline of {timeout:g} s", code="deadline_exceeded",
        headers=gen.headers,
    )
    gen.close(504, output=output, error=error.message)
    raise error


# ------------------------------------------------------------------------------ streams


def _sse(gen: Generation, chunks: AsyncIterator[str]) -> StreamingResponse:
    # If the client leaves before the body starts, the iterator never runs its `finally`;
    # the background task then records the request (close() is idempotent).
    gone = BackgroundTask(gen.close, CLIENT_GONE, error="client disconnected")
    headers = {**gen.headers, "cache-control": "no-cache", "x-accel-buffering": "no"}
    return StreamingResponse(chunks, media_type="text/event-stream", headers=headers, background=gone)


def _event(payload: Any) -> str:
    data = payload.model_dump(exclude_none=False) if hasattr(payload, "model_dump") else payload
    return f"data: {json.dumps(data, separators=(',', ':'))}\n\n"


def _chunk_event(chunk: Any, include_usage: bool) -> str:
    """A stream chunk as OpenAI writes it: a delta holds only what it carries (`{}` at the
    finish), and `usage` appears only when the client asked for it (null until the last)."""
    data = chunk.model_dump()
    for choice in data["choices"]:
        if "delta" in choice:
            choice["delta"] = {k: v for k, v in choice["delta"].items() if v is not None}
    if not include_usage:
        data.pop("usage", None)
    return _event(data)


async def _stream(gen: Generation, first: str | None, piece, final, include_usage: bool) -> AsyncIterator[str]:
    """The SSE body shared by chat and text streams: pieces, the finish, usage, [DONE]."""
    pieces: list[str] = []
    try:
        if first is not None:
            yield first
        async for event in gen.events():
            if event.text:
                pieces.append(event.text)
                yield _chunk_event(piece(event.text), include_usage)
            if event.finished:
                error = gen.failure(event)
                if error is not None:
                    message = public_message(error.message)
                    body = {"error": {"message": message, "type": error_type(error.status), "param": None,
                                      "code": error.code, "request_id": gen.request_id}}
                    yield _event(body)
                    yield "data: [DONE]\n\n"
                    gen.close(error.status, output="".join(pieces), error=error.message)
                    return
                yield _chunk_event(final(_openai_finish(event.finish_reason)), include_usage)
        if include_usage:
            yield _chunk_event(final(None, usage=gen.usage()), include_usage)
        yield "data: [DONE]\n\n"
        gen.close(200, output="".join(pieces))
    finally:
        gen.close(CLIENT_GONE, output="".join(pieces), error="client disconnected")


def _chat_chunks(gen: Generation, include_usage: bool) -> AsyncIterator[str]:
    base = {"id": f"chatcmpl-{gen.request_id}", "created": int(time.time()), "model": gen.served.public_ref}

    def piece(text: str) -> api.ChatCompletionChunk:
        return api.ChatCompletionChunk(**base, choices=[api.ChatChunkChoice(delta=api.ChatDelta(content=text))])

    def final(reason: str | None, usage: api.Usage | None = None) -> api.ChatCompletionChunk:
        choices = [] if usage else [api.ChatChunkChoice(delta=api.ChatDelta(), finish_reason=reason)]
        return api.ChatCompletionChunk(**base, choices=choices, usage=usage)

    opening = api.ChatChunkChoice(delta=api.ChatDelta(role="assistant", content=""))
    role = _chunk_event(api.ChatCompletionChunk(**base, choices=[opening]), include_usage)
    return _stream(gen, role, piece, final, include_usage)


def _completion_chunks(gen: Generation, include_usage: bool) -> AsyncIterator[str]:
    base = {"id": f"cmpl-{gen.request_id}", "created": int(time.time()), "model": gen.served.public_ref}

    def piece(text: str) -> api.Completion:
        return api.Completion(**base, choices=[api.CompletionChoice(text=text)])

    def final(reason: str | None, usage: api.Usage | None = None) -> api.Completion:
        choices = [] if usage else [api.CompletionChoice(text="", finish_reason=reason)]
        return api.Completion(**base, choices=choices, usage=usage)

    return _stream(gen, None, piece, final, include_usage)


def _openai_finish(reason: str | None) -> str:
    """OpenAI knows "stop" and "length"; cvml's engine says the same for a normal finish."""
    return reason if reason in ("stop", "length") else "stop"


async def _disconnected(request: Request) -> None:
    """Return once the client has gone (the body is read by now, so `receive` waits for
    the ASGI `http.disconnect` message)."""
    while (await request.receive())["type"] != "http.disconnect":
        await anyio.sleep(0.05)  # not expected once the body is read; never spin on it


def _is_cancellation(exc: BaseException) -> bool:
    return isinstance(exc, anyio.get_cancelled_exc_class())
