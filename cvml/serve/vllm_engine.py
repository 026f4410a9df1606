"""`cvml serve --engine vllm`: vLLM's OpenAI server generates, cvml stays in front of it.

cvml starts vLLM's server on the model folder (a child process on a private port) and
talks to it through `UpstreamEngine`, which has the engine contract of
`cvml.serve.types`. So the A/B split, the chat template, the domain endpoint, the safety
checks, the request log and the metrics are the same code on either engine: cvml builds
the prompt ids with the model's stored template and asks vLLM's `/v1/completions` to
continue them (vLLM accepts token ids as the prompt), streaming the text back.

`UpstreamEngine` works with any OpenAI-compatible server that takes token-id prompts,
which is how the tests check it here, where vLLM (a GPU package) is not installed.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx

from cvml.errors import ConfigError, ModelError
from cvml.modelio import ModelRef
from cvml.serve.pool import ServedModel
from cvml.serve.types import (
    EngineUnavailableError,
    GenerationRequest,
    PromptTooLongError,
    QueueFullError,
    RequestStats,
    TokenEvent,
)

_log = logging.getLogger("cvml.serve")
VLLM_START_TIMEOUT_S = 900.0  # a large model's load and CUDA-graph capture take minutes


def require_vllm() -> None:
    """Raises ConfigError (exit 2) with the install command where vLLM is not importable."""
    if importlib.util.find_spec("vllm") is None:
        raise ConfigError(
            "vLLM is not installed: pip install vllm (GPU)",
            hint="or serve with cvml's own engine: --engine cvml (the default; CPU or GPU)",
        )


class UpstreamHandle:
    """One request forwarded upstream: async iteration over its TokenEvents, cancel(), stats."""

    def __init__(self, request: GenerationRequest):
        self.request = request
        self.request_id = request.request_id
        self.stats = RequestStats(arrival=request.arrival, prompt_tokens=len(request.prompt_ids))
        self._events: asyncio.Queue[TokenEvent] = asyncio.Queue()
        self._task: asyncio.Task | None = None
        self.done = False

    def cancel(self) -> None:
        if self._task is not None and not self.done:
            self._task.cancel()

    async def __aiter__(self) -> AsyncIterator[TokenEvent]:
        while True:
            event = await self._events.get()
            yield event
            if event.finished:
                return

    def _push(self, text: str, now: float) -> None:
        if self.stats.first_token_at is None:
            self.stats.first_token_at = now
        self.stats.token_times.append(now)
        self._events.put_nowait(TokenEvent(text=text))

    def _finish(self, reason: str, error: str | None = None) -> None:
        if self.done:
            return
        self.done = True
        self.stats.finished_at = time.monotonic()
        self.stats.finish_reason = reason
        if not self.stats.completion_tokens:
            self.stats.completion_tokens = len(self.stats.token_times)
        self._events.put_nowait(TokenEvent(text="", finished=True, finish_reason=reason, error=error))


class UpstreamEngine:
    """The engine contract over an OpenAI-compatible `/v1/completions` that takes token ids.

    Admission control and the context check happen here, so a refusal looks the same as
    on cvml's engine. Running = requests forwarded (up to `max_batch_size`), waiting = the
    rest; the upstream server does its own batching.

    Args:
        base_url: the upstream server, e.g. http://127.0.0.1:PORT.
        model_name: the `model` the upstream serves the folder as.
        context_length: the model's context (prompt + new tokens).
        max_batch_size, max_queue: together, the requests in flight at most.
    """

    def __init__(
        self, base_url: str, model_name: str, context_length: int, *, max_batch_size: int = 16, max_queue: int = 64
    ):
        self.base_url = base_url
        self.model_name = model_name
        self.context_length = context_length
        self.max_batch_size = max_batch_size
        self.max_queue = max_queue
        self._handles: set[UpstreamHandle] = set()
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._accepting = True

    @property
    def num_running(self) -> int:
        return min(len(self._handles), self.max_batch_size)

    @property
    def num_waiting(self) -> int:
        return max(0, len(self._handles) - self.max_batch_size)

    def start(self) -> None:
        """Nothing to start: the upstream server runs already."""

    def submit(self, request: GenerationRequest) -> UpstreamHandle:
        """Forward a request (call from the event loop); never blocks.

        Raises:
            PromptTooLongError, QueueFullError, EngineUnavailableError: as cvml's engine.
        """
        if not self._accepting:
            raise EngineUnavailableError("the engine has stopped", hint="Retry against a ready server.")
        n_prompt, n_new = len(request.prompt_ids), request.params.max_new_tokens
        if n_prompt + n_new > self.context_length:
            raise PromptTooLongError(
                f"prompt ({n_prompt} tokens) + max_new_tokens ({n_new}) exceeds the model's context of "
                f"{self.context_length} tokens",
                hint="Shorten the input or ask for fewer new tokens.",
            )
        if len(self._handles) >= self.max_batch_size + self.max_queue:
            raise QueueFullError(f"{self.num_waiting} requests are already waiting (max_queue={self.max_queue})")
        if self._client is None:
            self._loop = asyncio.get_running_loop()
            self._client = httpx.AsyncClient(base_url=self.base_url, timeout=httpx.Timeout(None, connect=10.0))
        handle = UpstreamHandle(request)
        self._handles.add(handle)
        handle._task = self._loop.create_task(self._forward(handle))
        return handle

    async def _forward(self, handle: UpstreamHandle) -> None:
        request, params = handle.request, handle.request.params
        body: dict[str, Any] = {
            "model": self.model_name,
            "prompt": list(request.prompt_ids),
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if params.seed is not None:
            body["seed"] = params.seed
        if params.stop:
            body["stop"] = list(params.stop)
        left = None if request.deadline is None else max(0.0, request.deadline - time.monotonic())
        reason, error = "error", None
        try:
            with anyio.fail_after(left):
                async with self._client.stream("POST", "/v1/completions", json=body) as response:
                    handle.stats.scheduled_at = time.monotonic()
                    if response.status_code != 200:
                        detail = (await response.aread()).decode("utf-8", "replace")[:500]
                        error = f"upstream answered {response.status_code}: {detail}"
                    else:
                        reason, error = await self._read_stream(handle, response)
        except TimeoutError:
            reason, error = "deadline", None
        except asyncio.CancelledError:
            reason, error = "cancelled", None
        except httpx.HTTPError as exc:
            reason, error = "error", f"upstream request failed: {exc}"
        finally:
            self._handles.discard(handle)
            handle._finish(reason, error)

    async def _read_stream(self, handle: UpstreamHandle, response: httpx.Response) -> tuple[str, str | None]:
        reason: str | None = None
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue
            data = line[len("data:") :].strip()
            if data == "[DONE]":
                break
            chunk = json.loads(data)
            if "error" in chunk:
                return "error", str(chunk["error"].get("message", chunk["error"]))
            usage = chunk.get("usage")
            if usage:
                handle.stats.completion_tokens = int(usage.get("completion_tokens") or 0)
            for choice in chunk.get("choices") or ():
                if choice.get("text"):
                    handle._push(choice["text"], time.monotonic())
                if choice.get("finish_reason"):
                    reason = choice["finish_reason"]
        return (reason if reason in ("stop", "length") else "stop"), None

    def drain(self, timeout_s: float = 30.0) -> bool:
        """Refuse new requests and wait (from a thread) for the forwarded ones to finish."""
        self._accepting = False
        deadline = time.monotonic() + timeout_s
        while self._handles and time.monotonic() < deadline:
            time.sleep(0.05)
        return not self._handles

    def stop(self) -> None:
        """Cancel what is in flight and close the connection pool (callable from any thread)."""
        self._accepting = False
        loop, client = self._loop, self._client
        if loop is None or client is None or loop.is_closed():
            return

        async def close() -> None:
            for handle in list(self._handles):
                handle.cancel()
            await client.aclose()

        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            loop.create_task(close())
        else:
            asyncio.run_coroutine_threadsafe(close(), loop).result(timeout=10)


class VllmServer:
    """vLLM's OpenAI-compatible server as a child process on a private port.

    Args:
        folder: the model folder (full weights, or GPTQ as vLLM reads it).
        served_name: the `model` name vLLM answers to.
        dtype: passed to vLLM's --dtype (auto, float16, bfloat16, float32).
    """

    def __init__(self, folder: Path, served_name: str, dtype: str = "auto"):
        self.folder = folder
        self.served_name = served_name
        self.dtype = dtype
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "vllm.entrypoints.openai.api_server",
            "--model", str(self.folder), "--served-model-name", self.served_name,
            "--host", "127.0.0.1", "--port", str(self.port), "--dtype", self.dtype,
        ]

    def start(self, timeout_s: float = VLLM_START_TIMEOUT_S) -> None:
        """Start vLLM and wait until its /health answers 200.

        Raises:
            ModelError: vLLM exited or did not become healthy within `timeout_s`.
        """
        _log.info("starting vLLM on %s: %s", self.url, " ".join(self.command()))
        self.process = subprocess.Popen(self.command())  # its log goes to our stderr
        deadline = time.monotonic() + timeout_s
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise ModelError(
                        f"vLLM exited with code {self.process.returncode} while loading {self.folder}",
                        hint="its log above says why (GPU memory, an unsupported architecture or quantization)",
                    )
                try:
                    if client.get(f"{self.url}/health").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.5)
        self.stop()
        raise ModelError(f"vLLM did not become healthy within {timeout_s:g} s", hint="see its log above")

    def stop(self, timeout_s: float = 30.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def vllm_opener(spec):
    """Opens a version by starting vLLM on its folder and an UpstreamEngine in front of it."""

    def open_model(variant: str, ref: ModelRef) -> ServedModel:
        from cvml.modelio import load_inference_tokenizer

        _check_vllm_can_load(ref)
        started = time.perf_counter()
        tokenizer = load_inference_tokenizer(ref.path)
        config = json.loads((ref.path / "config.json").read_text(encoding="utf-8"))
        context_length = int(config.get("max_position_embeddings") or 2048)
        server = VllmServer(ref.path, ref.ref, spec.dtype)
        server.start()
        engine = UpstreamEngine(
            server.url, ref.ref, context_length, max_batch_size=spec.max_batch_size, max_queue=spec.max_queue
        )

        def release() -> None:
            engine.stop()
            server.stop()

        return ServedModel(
            variant=variant, model_ref=ref, tokenizer=tokenizer, engine=engine, context_length=context_length,
            release=release, load_s=time.perf_counter() - started,
        )

    return open_model


def _check_vllm_can_load(ref: ModelRef) -> None:
    """vLLM loads full weights and GPTQ folders; a LoRA adapter or cvml's CPU formats it cannot.

    Raises:
        ModelError: naming the step that makes a folder vLLM can load.
    """
    if ref.kind == "adapter":
        raise ModelError(
            f"{ref.path} is a LoRA adapter; vLLM serves it merged",
            hint=f"merge it first (cvml merge {ref.path}) and serve the merged folder",
        )
    if ref.kind == "quantized":
        config = json.loads((ref.path / "config.json").read_text(encoding="utf-8"))
        method = (config.get("quantization_config") or {}).get("quant_method")
        if method != "gptq":
            raise ModelError(
                f"{ref.path} is quantized in a format vLLM does not load ({method or 'cvml CPU format'})",
                hint="serve it with --engine cvml, or quantize with --method gptq for vLLM",
            )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
