"""Where the load generator sends requests: cvml's in-process engine, or any
OpenAI-compatible server over HTTP (streaming /v1/chat/completions).

Both yield a `send(prompt) -> RequestRecord` inside an async session and time tokens as
the client receives them. A failed request becomes a record with its error, never an
exception, so one bad request counts toward the error rate instead of ending the run.
"""

from __future__ import annotations

import json
import time
from contextlib import asynccontextmanager
from typing import AsyncIterator

from cvml.bench.loadgen import RequestRecord, Send, Timing
from cvml.bench.workload import BenchPrompt
from cvml.prompts import render_chat

FAILED_FINISH = ("error", "deadline", "cancelled")


class EngineTarget:
    """Requests into a started `cvml.serve.engine.Engine`; prompts tokenized once, as serve does."""

    kind = "engine"

    def __init__(self, engine, tokenizer, *, max_new_tokens: int, ignore_eos: bool, timeout_s: float):
        self.engine = engine
        self.tokenizer = tokenizer
        self.max_new_tokens = max_new_tokens
        self.ignore_eos = ignore_eos
        self.timeout_s = timeout_s
        self._ids: dict[str, list[int]] = {}

    def prompt_ids(self, prompt: BenchPrompt) -> list[int]:
        if prompt.id not in self._ids:
            text = render_chat(self.tokenizer, prompt.messages)
            self._ids[prompt.id] = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return self._ids[prompt.id]

    @asynccontextmanager
    async def session(self) -> AsyncIterator[Send]:
        yield self.send

    async def send(self, prompt: BenchPrompt) -> RequestRecord:
        from cvml.serve.types import EngineError, GenerationRequest, SamplingParams

        params = SamplingParams(max_new_tokens=self.max_new_tokens, ignore_eos=self.ignore_eos)
        request = GenerationRequest(self.prompt_ids(prompt), params=params, deadline=time.monotonic() + self.timeout_s)
        timing = Timing()
        try:
            handle = self.engine.submit(request)
            async for event in handle:
                timing.tokens_arrived(len(event.token_ids))
                if event.finished and event.finish_reason in FAILED_FINISH:
                    return timing.record(error=event.error or f"finished with {event.finish_reason}")
        except EngineError as exc:
            return timing.record(error=f"{type(exc).__name__}: {exc}")
        return timing.record()


class HttpTarget:
    """Streaming chat completions against an OpenAI-compatible server (cvml serve, vLLM, ...).

    Tokens are counted from the final `usage` chunk when the server sends one
    (stream_options.include_usage), else one per content chunk. `ignore_eos` is sent as the
    vLLM extension field; servers that do not know it ignore it.
    """

    kind = "url"

    def __init__(self, url: str, model: str, *, max_new_tokens: int, ignore_eos: bool, timeout_s: float, max_connections: int):
        base = url.rstrip("/")
        self.endpoint = base + ("/chat/completions" if base.endswith("/v1") else "/v1/chat/completions")
        self.model = model
        self.max_new_tokens = max_new_tokens
        self.ignore_eos = ignore_eos
        self.timeout_s = timeout_s
        self.max_connections = max_connections
        self._client = None

    @asynccontextmanager
    async def session(self) -> AsyncIterator[Send]:
        import httpx

        limits = httpx.Limits(max_connections=self.max_connections, max_keepalive_connections=self.max_connections)
        async with httpx.AsyncClient(timeout=self.timeout_s, limits=limits) as client:
            self._client = client
            try:
                yield self.send
            finally:
                self._client = None

    async def send(self, prompt: BenchPrompt) -> RequestRecord:
        import httpx

        body = {
            "model": self.model,
            "messages": list(prompt.messages),
            "max_tokens": self.max_new_tokens,
            "temperature": 0,
            "stream": True,
            "stream_options": {"include_usage": True},
            "ignore_eos": self.ignore_eos,
        }
        timing = Timing()
        usage_tokens = None
        try:
            async with self._client.stream("POST", self.endpoint, json=body) as response:
                if response.status_code != 200:
                    text = (await response.aread()).decode(errors="replace")
                    return timing.record(error=f"HTTP {response.status_code}: {text[:200]}")
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    chunk = json.loads(data)
                    if "error" in chunk:
                        return timing.record(error=f"stream error: {chunk['error']}")
                    if chunk.get("usage"):
                        usage_tokens = int(chunk["usage"]["completion_tokens"])
                    for choice in chunk.get("choices") or ():
                        if (choice.get("delta") or {}).get("content"):
                            timing.tokens_arrived(1)
                        if choice.get("finish_reason") in FAILED_FINISH:
                            return timing.record(error=f"finished with {choice['finish_reason']}")
        except (httpx.HTTPError, json.JSONDecodeError) as exc:
            return timing.record(error=f"{type(exc).__name__}: {exc}")
        return timing.record(tokens=usage_tokens)
