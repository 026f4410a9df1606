"""Request and response bodies of `cvml serve`: OpenAI's shapes, and the domain endpoints.

The OpenAI-compatible models ignore fields they do not know, as OpenAI-compatible servers
do (clients send `frequency_penalty`, `logprobs: false`, ...); the domain endpoints refuse
unknown fields so a typo in the web app fails loudly. Bounds live here, so FastAPI turns
every bad value into a 400 naming the field before any handler runs.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from cvml.prompts import build_messages

TASKS = ("rewrite_bullet", "tailor_section", "summary")
# Texts longer than this cannot fit any context cvml serves; refusing them early keeps
# tokenization of a megabyte of junk off the event loop. The cap holds per text and for the
# whole request (every message and content part together).
MAX_TEXT_CHARS = 100_000
MAX_REQUEST_CHARS = MAX_TEXT_CHARS
MAX_CONTENT_PARTS = 64
# The rewrite's safety checks cost more than linearly in the text (seconds at 100k
# characters); beyond this, text + job_description are refused (413) before generation.
MAX_REWRITE_CHARS = 20_000
MAX_SEED = 2**63 - 1


def _encodable(text: str) -> str:
    """Reject strings that cannot be UTF-8 (lone surrogates from JSON `\\ud800` escapes)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text must be valid Unicode (it holds an unpaired surrogate)") from None
    return text


Text = Annotated[str, Field(max_length=MAX_TEXT_CHARS), AfterValidator(_encodable)]
ShortText = Annotated[str, Field(max_length=256), AfterValidator(_encodable)]
EditedText = Annotated[str, Field(min_length=1, max_length=MAX_REWRITE_CHARS), AfterValidator(_encodable)]


class OpenAIModel(BaseModel):
    """OpenAI-compatible bodies: unknown fields are ignored, like OpenAI-compatible servers do."""

    model_config = ConfigDict(extra="ignore", protected_namespaces=())


class DomainModel(BaseModel):
    """cvml's own bodies: unknown fields are a 400."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())


# --------------------------------------------------------------------------- requests


class TextPart(OpenAIModel):
    type: Literal["text"]
    text: Text


class ChatMessage(OpenAIModel):
    role: Literal["system", "developer", "user", "assistant"]
    content: Text | Annotated[list[TextPart], Field(max_length=MAX_CONTENT_PARTS)]

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class StreamOptions(OpenAIModel):
    include_usage: bool = False


# Fields that change what a request means and cvml does not do: refused (400 naming the
# field) rather than ignored, with the value that is harmless to send.
UNSUPPORTED_FIELDS: dict[str, Any] = {
    "tools": [], "tool_choice": "none", "functions": [], "function_call": "none", "logit_bias": {},
    "logprobs": False, "top_logprobs": 0, "audio": None, "prediction": None, "web_search_options": None,
    "suffix": "", "echo": False, "best_of": 1, "modalities": ["text"],
}


class SamplingFields(OpenAIModel):
    """What chat and text completions share: the model, decoding settings, streaming.

    Unknown fields are kept (`model_extra`) so that those in UNSUPPORTED_FIELDS can be
    refused by name; every other unknown field is ignored, as OpenAI-compatible servers do.
    """

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    model: ShortText | None = Field(
        None, description="A served model id (see GET /v1/models); absent = routed by the A/B split."
    )
    max_tokens: int | None = Field(
        None, ge=1, description="New tokens at most (capped by the server's max_new_tokens)."
    )
    temperature: float | None = Field(None, ge=0, le=2, description="0 = greedy; OpenAI's default 1.")
    top_p: float | None = Field(None, gt=0, le=1)
    n: int = Field(1, ge=1, le=1, description="Choices per request; cvml serves one.")
    stop: ShortText | Annotated[list[ShortText], Field(max_length=4)] | None = Field(
        None, description="Up to 4 stop strings."
    )
    seed: int | None = Field(None, ge=0, le=MAX_SEED)
    # vLLM's extensions, so load generators (cvml bench --url) get fixed-length outputs.
    ignore_eos: bool = Field(False, description="Keep generating past the end-of-sequence token (vLLM extension).")
    repetition_penalty: float | None = Field(
        None, gt=0, le=10, description="Penalty on repeated tokens; absent = the model's generation config (vLLM extension)."
    )
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: ShortText | None = Field(None, description="Stable user id: sticky A/B assignment.")

    def stop_sequences(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        stops = [self.stop] if isinstance(self.stop, str) else self.stop
        return tuple(s for s in stops if s)

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    def unsupported(self) -> str | None:
        """The first field sent that cvml would have to ignore to answer (tools, logprobs, ...)."""
        for name, harmless in UNSUPPORTED_FIELDS.items():
            value = (self.model_extra or {}).get(name)
            if value is not None and value != harmless and not (harmless == [] and value == []):
                return name
        return None


class JsonSchemaFormat(OpenAIModel):
    name: ShortText = "response"
    description: ShortText | None = None
    schema_: dict[str, Any] = Field(alias="schema", description="A JSON schema the output must match.")
    strict: bool | None = Field(None, description="cvml enforces the schema whether or not strict is set.")


class ResponseFormat(OpenAIModel):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_for_json_schema(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("type json_schema needs a json_schema with a schema")
        return self


class ChatCompletionRequest(SamplingFields):
    messages: list[ChatMessage] = Field(
        min_length=1, max_length=256, description=f"At most {MAX_REQUEST_CHARS} characters in all."
    )
    max_completion_tokens: int | None = Field(
        None, ge=1, description="Newer name of max_tokens; wins when both are set."
    )
    response_format: ResponseFormat | None = Field(
        None, description="json_object or json_schema: the output is kept valid JSON (for the schema) while decoding."
    )

    @field_validator("messages")
    @classmethod
    def _total_characters(cls, messages: list[ChatMessage]) -> list[ChatMessage]:
        total = sum(len(m.content) if isinstance(m.content, str) else sum(len(p.text) for p in m.content)
                    for m in messages)
        if total > MAX_REQUEST_CHARS:
            raise ValueError(f"the messages hold {total} characters in all; at most {MAX_REQUEST_CHARS}")
        return messages

    def new_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class CompletionRequest(SamplingFields):
    prompt: Text | Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1, max_length=MAX_TEXT_CHARS)] = Field(
        description="The prompt text, or its token ids (as vLLM and OpenAI accept)."
    )

    def new_tokens(self) -> int | None:
        return self.max_tokens


class RewriteRequest(DomainModel):
    text: Text = Field(min_length=1, description="The CV text: a bullet, a section, or the material for a summary.")
    task: Literal[TASKS] = Field(  # type: ignore[valid-type]
        description="rewrite_bullet, tailor_section (needs job_description) or summary."
    )
    job_description: Text | None = Field(None, validate_default=True, description="The job the text is tailored to.")
    user_id: ShortText | None = Field(None, description="Stable user id: sticky A/B assignment.")
    model: ShortText | None = Field(None, description="Pin a served model id instead of the A/B split.")
    max_tokens: int | None = Field(None, ge=1, description="New tokens at most (capped by the server).")
    temperature: float = Field(0.0, ge=0, le=2, description="0 (default) = greedy, the same answer every time.")
    seed: int | None = Field(None, ge=0, le=MAX_SEED)
    grounding: Literal["off", "numbers", "strict"] | None = Field(
        None,
        description="Decoding may state only the numbers (numbers) or the numbers and names (strict) of text and "
        "job_description; default: the server's serve.grounding.",
    )
    guard: Literal["flag", "retry", "block"] | None = Field(
        None,
        description="When a check fails: return the output flagged (flag), resample until the checks pass and block "
        "if none does (retry), or return the text unchanged (block); default: the server's serve.guard.",
    )
    response_format: ResponseFormat | None = Field(
        None, description='JSON for the app to parse, e.g. a schema {"bullets": [...], "skills": [...]}; grounded too.'
    )

    @field_validator("text")
    @classmethod
    def _not_blank(cls, text: str) -> str:
        if not text.strip():
            raise ValueError("text is blank")
        return text

    @field_validator("job_description")
    @classmethod
    def _job_for_tailoring(cls, job: str | None, info) -> str | None:
        if info.data.get("task") == "tailor_section" and not (job or "").strip():
            raise ValueError("task tailor_section needs a job_description")
        return job

    def messages(self) -> list[dict[str, str]]:
        return build_messages(self.task, self.text, self.job_description)

    @property
    def checked_chars(self) -> int:
        """What the safety checks compare the output with: text + job_description."""
        return len(self.text) + len(self.job_description or "")

    def new_tokens(self) -> int | None:
        return self.max_tokens

    def stop_sequences(self) -> tuple[str, ...]:
        return ()


class FeedbackRequest(DomainModel):
    request_id: ShortText = Field(description="The request id a response returned (x-request-id).")
    accepted: bool | None = Field(None, description="Did the user keep the output?")
    rating: int | None = Field(None, ge=1, le=5, description="The user's rating, 1 to 5.")
    edited_text: EditedText | None = Field(
        None,
        description="The output as the user kept it after editing (stored PII-redacted, like the request's text); "
        "`cvml monitor export` makes it the training target.",
    )

    @model_validator(mode="after")
    def _some_signal(self) -> FeedbackRequest:
        if self.accepted is None and self.rating is None and self.edited_text is None:
            raise ValueError("give accepted, rating, edited_text, or several")
        if self.edited_text is not None and not self.edited_text.strip():
            raise ValueError("edited_text is blank")
        return self


# -------------------------------------------------------------------------- responses


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: str | None
    logprobs: None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


class ChatDelta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChatChunkChoice(BaseModel):
    index: int = 0
    delta: ChatDelta
    finish_reason: str | None = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChatChunkChoice]
    usage: Usage | None = None


class CompletionChoice(BaseModel):
    index: int = 0
    text: str
    finish_reason: str | None = None
    logprobs: None = None


class Completion(BaseModel):
    """Both the whole text completion and (with `usage` None) one streamed chunk of it."""

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "cvml"
    variant: str | None = Field(description="The variant this id pins; null when the id is routed by the A/B split.")
    ref: str | None = Field(description="The registry version (name@N) or folder the pinned variant serves now.")
    version: int | None = None


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class PiiLeakCheck(BaseModel):
    flagged: bool = Field(
        description="The output holds personal data found in neither the text nor the job description."
    )
    types: list[str] = Field(description="PII types of the leaked items (EMAIL, PHONE, ...).")
    n_leaks: int


class Claim(BaseModel):
    kind: str = Field(description="number, percent, money, year, duration, employer, school or degree.")
    text: str
    span: tuple[int, int] = Field(description="Character offsets of the claim in the output.")
    normalized: str


class FabricationCheck(BaseModel):
    flagged: bool = Field(
        description="The output states facts (numbers, employers, degrees) the inputs do not support."
    )
    claims: list[Claim] = Field(description="The unsupported claims.")
    n_claims: int = Field(description="Every claim the output makes, supported or not.")


class Finding(BaseModel):
    category: str
    text: str
    span: tuple[int, int] = Field(description="Character offsets in the text it was found in.")


class HarmCheck(BaseModel):
    flagged: bool
    categories: list[str] = Field(description="What was found: age, religion, ... (protected attributes); slur, "
                                              "insult, ... (abusive).")
    n: int
    findings: list[Finding]


class InjectionCheck(BaseModel):
    flagged: bool = Field(description="The text or job description carries instructions to the model; they were cut "
                                      "out of the prompt.")
    where: list[str] = Field(description="text and/or job_description.")
    categories: list[str]
    n: int
    findings: dict[str, list[Finding]] = Field(description="Per input (text, job_description), what was found.")


class Checks(BaseModel):
    pii_leak: PiiLeakCheck
    fabrication: FabricationCheck
    protected_attributes: HarmCheck = Field(description="Protected attributes (age, religion, ...) the inputs lack.")
    abusive: HarmCheck = Field(description="Abusive or discriminatory language the inputs lack.")
    injection: InjectionCheck


class Guard(BaseModel):
    action: Literal["passed", "flagged", "retried", "blocked"] = Field(
        description="passed: the first output passed the checks; retried: a resampled one did; flagged: it failed "
        "and is returned with its flags (guard flag); blocked: every attempt failed and `output` is the text unchanged."
    )
    attempts: int = Field(description="Outputs generated and checked.")
    reasons: list[str] = Field(description="The checks that failed, over all attempts (fabrication, pii_leak, ...).")
    grounding: Literal["off", "numbers", "strict"] = Field(description="The grounding decoding ran under.")


class RewriteResponse(BaseModel):
    output: str
    model: str = Field(description="The registry name (or folder) of the model that answered.")
    version: int | None = Field(description="Its registry version; null for an unregistered folder.")
    variant: str
    request_id: str
    finish_reason: str
    usage: Usage
    checks: Checks
    guard: Guard


class FeedbackResponse(BaseModel):
    request_id: str
    recorded: bool = True


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | int | None = None
    request_id: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


def error_body(
    message: str, type_: str, param: str | None = None, code: Any = None, request_id: str | None = None
) -> dict:
    """OpenAI's error envelope as plain data."""
    detail = ErrorDetail(message=message, type=type_, param=param, code=code, request_id=request_id)
    return {"error": detail.model_dump()}
