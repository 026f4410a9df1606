"""cvml's default inference engine: iteration-level continuous batching on transformers.

One background thread owns the model. Between two decode steps it admits waiting
requests (prefilled together, then merged into the running batch's KV cache, see
`cvml.serve.kvcache`) and drops finished, cancelled or expired ones, so a long request
never holds short ones back and a free slot is reused at the next step. Callers on any
thread submit a `GenerationRequest` and read the returned `RequestHandle`: an async
iterator of `TokenEvent`s for an asyncio server, or a blocking `result()` for threads.
A failure that belongs to one request (its sampling, its text) finishes that request with
"error"; the others go on.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections import deque
from typing import AsyncIterator, Callable, Iterator

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from cvml.errors import ModelError
from cvml.serve.detokenize import IncrementalDetokenizer, StopMatcher
from cvml.serve.kvcache import BatchKV, left_padded
from cvml.serve.sampling import SamplingBatch
from cvml.serve.types import (
    EngineUnavailableError,
    GenerationRequest,
    GenerationResult,
    InvalidRequestError,
    PromptTooLongError,
    QueueFullError,
    RequestStats,
    TokenEvent,
)

log = logging.getLogger(__name__)


class RequestHandle:
    """The caller's side of one submitted request.

    Iterate it from an asyncio loop (`async for event in handle`), or block on
    `result()` / iterate `events()` from a thread. Events are kept, so every consumer sees
    all of them from the first, whenever it starts reading.
    """

    def __init__(self, request: GenerationRequest):
        self.request = request
        self.request_id = request.request_id
        self.stats = RequestStats(arrival=request.arrival, prompt_tokens=len(request.prompt_ids))
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._events: list[TokenEvent] = []
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
        self._cancelled = False
        self._result: GenerationResult | None = None

    @property
    def done(self) -> bool:
        return self._result is not None

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def cancel(self) -> None:
        """Stop generating (the client went away): the request leaves the batch at the next
        step and finishes with "cancelled". No effect once it has finished."""
        self._cancelled = True

    def result(self, timeout: float | None = None) -> GenerationResult:
        """Block until the request finishes.

        Raises:
            TimeoutError: not finished within `timeout` seconds.
        """
        with self._changed:
            if not self._changed.wait_for(lambda: self._result is not None, timeout):
                raise TimeoutError(f"request {self.request_id} did not finish within {timeout} s")
            return self._result

    async def aresult(self) -> GenerationResult:
        """The whole result, awaited from an asyncio loop."""
        async for _ in self:
            pass
        return self._result

    def __aiter__(self) -> AsyncIterator[TokenEvent]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[TokenEvent]:
        wake = asyncio.Event()
        entry = (asyncio.get_running_loop(), wake)
        with self._lock:
            self._waiters.append(entry)
        try:
            seen = 0
            while True:
                with self._lock:
                    new = self._events[seen:]
                    wake.clear()
                for event in new:
                    seen += 1
                    yield event
                    if event.finished:
                        return
                await wake.wait()
        finally:
            with self._lock:
                self._waiters.remove(entry)

    def events(self, timeout: float | None = None) -> Iterator[TokenEvent]:
        """Blocking iterator over the events, for threads.

        Raises:
            TimeoutError: no new event within `timeout` seconds.
        """
        seen = 0
        while True:
            with self._changed:
                if not self._changed.wait_for(lambda: len(self._events) > seen, timeout):
                    raise TimeoutError(f"request {self.request_id}: no event within {timeout} s")
                new = self._events[seen:]
            for event in new:
                seen += 1
                yield event
                if event.finished:
                    return

    def _publish(self, event: TokenEvent, result: GenerationResult | None = None) -> None:
        """Engine side: record an event (and the result with the last one) and wake readers."""
        with self._changed:
            self._events.append(event)
            if result is not None:
                self._result = result
            self._changed.notify_all()
            waiters = list(self._waiters)
        for loop, wake in waiters:
            try:
                loop.call_soon_threadsafe(wake.set)
            except RuntimeError:  # that reader's loop is closed; nobody is listening there
                pass


class _Sequence:
    """Engine-side state of one admitted request."""

    def __init__(self, handle: RequestHandle, tokenizer, eos_ids: frozenset[int]):
        self.handle = handle
        self.request = handle.request
        self.params = handle.request.params
        self.stop_ids = frozenset() if self.params.ignore_eos else eos_ids
        self.detokenizer = IncrementalDetokenizer(tokenizer)
        self.stops = StopMatcher(self.params.stop)
        self.ids: list[int] = []
        self.unsent_ids: list[int] = []
        self.text: list[str] = []
        self.finished = False


class Engine:
    """Continuous-batching generation on one model, driven by one background thread.

    Args:
        loaded: the model, tokenizer and device from `cvml.modelio.load_for_inference`.
        max_batch_size: sequences decoded together; more wait in the queue.
        max_queue: waiting requests beyond which `submit` refuses (admission control).
        batch_wait_ms: when idle, how long the first arrival waits for company, so a
            burst of requests is prefilled as one batch.
        num_threads: torch intra-op threads of the engine thread (default: torch's).

    `on_finish` holds callables run with each finished `RequestHandle` (metrics, logging).
    They run on the engine thread right after the result is published: keep them quick.

    Raises:
        ModelError: the model's KV cache is not a plain full-attention cache (sliding
            window or hybrid layers), which this engine cannot batch.
    """

    def __init__(
        self,
        loaded,
        *,
        max_batch_size: int = 16,
        max_queue: int = 64,
        batch_wait_ms: float = 2.0,
        num_threads: int | None = None,
    ):
        self.model = loaded.model
        self.tokenizer = loaded.tokenizer
        self.device = torch.device(loaded.device)
        self.context_length = loaded.context_length
        self.max_batch_size = max_batch_size
        self.max_queue = max_queue
        self.batch_wait_s = batch_wait_ms / 1000
        self.num_threads = num_threads
        self.on_finish: list[Callable[[RequestHandle], None]] = []
        self.supports_constraints = True  # a request's token constraint (grounded decoding) is applied

        config = self.model.config
        layers = DynamicCache(config=config).layers
        if any(type(layer) is not DynamicLayer for layer in layers):
            raise ModelError(
                f"cvml's engine batches full-attention KV caches only; {type(self.model).__name__} uses "
                f"{sorted({type(layer).__name__ for layer in layers})}",
                hint="Serve this model with --engine vllm.",
            )
        self.vocab_size = self.model.get_input_embeddings().num_embeddings
        generation = getattr(self.model, "generation_config", None)
        self.eos_ids = frozenset(_eos_ids(self.tokenizer, generation))
        pad = self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else min(self.eos_ids, default=0)
        self.default_penalty = float(getattr(generation, "repetition_penalty", None) or 1.0)
        self._init_queue()
        # The running batch; only the engine thread touches these.
        self._kv: BatchKV | None = None
        self._sampling: SamplingBatch | None = None
        self._last: torch.Tensor | None = None  # the token each running row feeds next

    def _init_queue(self) -> None:
        """The admission side every engine on this contract shares (see `OpenVinoEngine`)."""
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)  # the engine thread waits here for work
        self._idle = threading.Condition(self._lock)  # drain() waits here for in-flight == 0
        self._waiting: deque[_Sequence] = deque()
        self._in_flight = 0
        self._state = "new"  # new -> running -> draining -> stopped
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._typical_e2e_s = 1.0  # moving average of finished requests' latency (Retry-After)
        self._running: list[_Sequence] = []

    # ----------------------------------------------------------------- caller side

    @property
    def num_running(self) -> int:
        return len(self._running)

    @property
    def num_waiting(self) -> int:
        return len(self._waiting)

    def start(self, timeout_s: float = 60.0) -> None:
        """Start the engine thread and return once the model has run one warm-up step."""
        with self._lock:
            if self._state != "new":
                return
            self._state = "running"
        self._thread = threading.Thread(target=self._run, name="cvml-engine", daemon=True)
        self._thread.start()
        self._ready.wait(timeout_s)

    def submit(self, request: GenerationRequest) -> RequestHandle:
        """Queue a request; never blocks.

        Raises:
            InvalidRequestError: empty prompt, unknown token id, sampling settings out of range.
            PromptTooLongError: prompt + max_new_tokens exceeds the model's context.
            QueueFullError: `max_queue` requests are already waiting.
            EngineUnavailableError: not started, draining or stopped.
        """
        self._validate(request)
        handle = RequestHandle(request)
        sequence = _Sequence(handle, self.tokenizer, self.eos_ids)
        with self._lock:
            if self._state != "running":
                reasons = {"new": "has not started", "draining": "is draining for shutdown"}
                reason = reasons.get(self._state, "has stopped")
                raise EngineUnavailableError(f"the engine {reason}", hint="Retry against a ready server.")
            if len(self._waiting) >= self.max_queue:
                # Roughly when a slot frees: the queue ahead, served max_batch_size at a time.
                rounds = math.ceil(len(self._waiting) / self.max_batch_size)
                raise QueueFullError(
                    f"{len(self._waiting)} requests are already waiting (max_queue={self.max_queue})",
                    retry_after_s=max(1.0, rounds * self._typical_e2e_s),
                )
            self._waiting.append(sequence)
            self._in_flight += 1
            self._wake.notify()
        return handle

    def drain(self, timeout_s: float = 30.0) -> bool:
        """Refuse new requests and wait for the admitted ones to finish.

        Returns:
            True when every admitted request finished within `timeout_s`.
        """
        with self._lock:
            if self._state == "running":
                self._state = "draining"
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout_s)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the engine thread; requests still in flight finish with "error"."""
        with self._lock:
            started = self._state != "new"
            self._state = "stopped"
            self._wake.notify_all()
        if started and self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout_s)

    def _validate(self, request: GenerationRequest) -> None:
        params, prompt = request.params, request.prompt_ids
        problems = []
        if not prompt:
            problems.append("the prompt is empty")
        bad = next((t for t in prompt if not isinstance(t, int) or not 0 <= t < self.vocab_size), None)
        if bad is not None:
            problems.append(f"token id {bad!r} is outside the vocabulary (0..{self.vocab_size - 1})")
        if params.max_new_tokens < 1:
            problems.append(f"max_new_tokens must be at least 1, got {params.max_new_tokens}")
        if not params.temperature >= 0:
            problems.append(f"temperature must be >= 0, got {params.temperature}")
        if not 0 < params.top_p <= 1:
            problems.append(f"top_p must be in (0, 1], got {params.top_p}")
        if params.repetition_penalty is not None and not params.repetition_penalty > 0:
            problems.append(f"repetition_penalty must be > 0, got {params.repetition_penalty}")
        if problems:
            raise InvalidRequestError("; ".join(problems))
        if len(prompt) + params.max_new_tokens > self.context_length:
            raise PromptTooLongError(
                f"prompt ({len(prompt)} tokens) + max_new_tokens ({params.max_new_tokens}) exceeds the model's "
                f"context of {self.context_length} tokens",
                hint="Shorten the input or ask for fewer new tokens.",
            )

    # ----------------------------------------------------------------- engine thread

    def _run(self) -> None:
        if self.num_threads:
            torch.set_num_threads(self.num_threads)
        with torch.inference_mode():
            try:
                self._warm_up()
            except Exception:  # a model that cannot run fails each request with its message instead
                log.exception("engine warm-up failed")
            self._ready.set()
            while True:
                admitted, dropped = self._schedule()
                for sequence, reason in dropped:
                    self._finish(sequence, reason)
                if admitted is None:
                    break
                try:
                    for group in prefill_groups(admitted):
                        self._prefill(group)
                    if self._running:
                        self._decode()
                except Exception as exc:  # a bug of the scheduler itself: fail the batch, keep serving
                    log.exception("engine step failed")
                    for sequence in self._running + [s for s in admitted if s not in self._running]:
                        self._finish(sequence, "error", f"engine step failed: {exc}")
                    self._keep([])
            for sequence in self._running + list(self._waiting):
                self._finish(sequence, "error", "the engine stopped before the request finished")
            self._running, self._kv, self._sampling, self._last = [], None, None, None
            self._waiting.clear()

    def _warm_up(self) -> None:
        """One padded prefill and one decode step, so the first request does not pay for
        lazy initialisation inside torch."""
        ids, mask, positions = left_padded([[self.pad_id, self.pad_id], [self.pad_id]], self.pad_id, self.device)
        kv = self._forward_prompts(ids, mask, positions)[0]
        mask, positions = kv.step_inputs()
        self.model(input_ids=ids[:, -1:], attention_mask=mask, position_ids=positions, cache=kv.cache, use_cache=True)

    def _forward_prompts(self, ids, mask, positions) -> tuple[BatchKV, torch.Tensor]:
        """Prefill left-padded prompts into a new cache; the logits of each last position."""
        cache = DynamicCache(config=self.model.config)
        out = self.model(
            input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True, logits_to_keep=1
        )
        return BatchKV(cache, mask.sum(-1)), out.logits[:, -1, :]

    def _schedule(self) -> tuple[list[_Sequence] | None, list[tuple[_Sequence, str]]]:
        """Requests to admit now (None when stopping) and queued ones to finish unadmitted."""
        with self._lock:
            while self._state != "stopped" and not self._waiting and not self._running:
                self._wake.wait()
            if self._state == "stopped":
                return None, []
            if not self._running and len(self._waiting) < self.max_batch_size and self.batch_wait_s > 0:
                until = time.monotonic() + self.batch_wait_s
                while len(self._waiting) < self.max_batch_size and self._state != "stopped":
                    left = until - time.monotonic()
                    if left <= 0 or not self._wake.wait(left):
                        break
            now = time.monotonic()
            dropped, kept = [], deque()
            for sequence in self._waiting:
                reason = _abandoned(sequence, now)
                if reason:
                    dropped.append((sequence, reason))
                else:
                    kept.append(sequence)
            self._waiting = kept
            admitted = []
            while self._waiting and len(self._running) + len(admitted) < self.max_batch_size:
                admitted.append(self._waiting.popleft())
            return admitted, dropped

    def _prefill(self, sequences: list[_Sequence]) -> None:
        """Prefill the admitted requests together; if that fails, one by one, so a request
        that breaks the forward pass fails alone."""
        try:
            self._prefill_group(sequences)
        except Exception as exc:
            if len(sequences) == 1:
                log.exception("prefill failed for request %s", sequences[0].handle.request_id)
                self._finish(sequences[0], "error", f"prefill failed: {exc}")
                return
            for sequence in sequences:
                if sequence.finished:
                    continue
                if sequence.ids:  # it had its first token when the merge failed
                    self._finish(sequence, "error", f"joining the batch failed: {exc}")
                else:
                    self._prefill([sequence])

    def _prefill_group(self, sequences: list[_Sequence]) -> None:
        now = time.monotonic()
        for sequence in sequences:
            sequence.handle.stats.scheduled_at = now
        prompts = [s.request.prompt_ids for s in sequences]
        ids, mask, positions = left_padded(prompts, self.pad_id, self.device)
        kv, logits = self._forward_prompts(ids, mask, positions)
        sampling = SamplingBatch(self.vocab_size, sorted(self.eos_ids), self.default_penalty, self.device)
        for sequence in sequences:
            sampling.add(sequence.params, sequence.request.prompt_ids, sequence.request.constraint)
        tokens, failed = self._sample(sampling, logits)
        sampling.observe(tokens)
        keep = self._accept(sequences, tokens.tolist(), failed)
        if not keep:
            return
        if len(keep) < len(sequences):
            kv.keep(torch.tensor(keep, device=self.device))
            sampling.keep(keep)
        last = tokens[keep] if len(keep) < len(sequences) else tokens
        joined = [sequences[i] for i in keep]
        if not self._running:
            self._running, self._kv, self._sampling, self._last = joined, kv, sampling, last
        else:
            self._kv.extend(kv)
            self._sampling.extend(sampling)
            self._last = torch.cat([self._last, last])
            self._running.extend(joined)

    def _decode(self) -> None:
        """One token for every running sequence."""
        now = time.monotonic()
        leaving = [(i, reason) for i, s in enumerate(self._running) if (reason := _abandoned(s, now))]
        if leaving:
            for i, reason in leaving:
                self._finish(self._running[i], reason)
            gone = {i for i, _ in leaving}
            self._keep([i for i in range(len(self._running)) if i not in gone])
            if not self._running:
                return
        try:
            mask, positions = self._kv.step_inputs()
            out = self.model(
                input_ids=self._last.unsqueeze(1),
                attention_mask=mask,
                position_ids=positions,
                cache=self._kv.cache,
                use_cache=True,
            )
            self._kv.advance()
        except Exception as exc:  # not attributable to one row: the whole batch is lost
            log.exception("decode step failed")
            for sequence in self._running:
                self._finish(sequence, "error", f"decode step failed: {exc}")
            self._keep([])
            return
        tokens, failed = self._sample(self._sampling, out.logits[:, -1, :])
        self._sampling.observe(tokens)
        self._last = tokens
        keep = self._accept(self._running, tokens.tolist(), failed)
        if len(keep) < len(self._running):
            self._keep(keep)

    def _keep(self, rows: list[int]) -> None:
        """Shrink the running batch to `rows`."""
        if not rows:
            self._running, self._kv, self._sampling, self._last = [], None, None, None
            return
        index = torch.tensor(rows, device=self.device)
        self._kv.keep(index)
        self._sampling.keep(rows)
        self._last = self._last.index_select(0, index)
        self._running = [self._running[i] for i in rows]

    def _sample(self, sampling: SamplingBatch, logits: torch.Tensor) -> tuple[torch.Tensor, dict[int, Exception]]:
        """Next tokens; when the batched call fails, row by row, so only the failing rows fail."""
        try:
            return sampling.sample(logits), {}
        except Exception:
            log.exception("batched sampling failed; sampling row by row")
        tokens = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
        failed: dict[int, Exception] = {}
        for row in range(logits.shape[0]):
            try:
                tokens[row] = sampling.sample(logits[row : row + 1], rows=[row])[0]
            except Exception as exc:
                failed[row] = exc
        return tokens, failed

    def _accept(self, sequences: list[_Sequence], tokens: list[int], failed: dict[int, Exception]) -> list[int]:
        """Hand each sequence its new token; return the rows that go on."""
        now = time.monotonic()
        keep = []
        for row, sequence in enumerate(sequences):
            if row in failed:
                self._finish(sequence, "error", f"sampling failed: {failed[row]}")
                continue
            try:
                finished = self._append(sequence, tokens[row], now)
            except Exception as exc:
                log.exception("request %s failed", sequence.handle.request_id)
                self._finish(sequence, "error", f"{type(exc).__name__}: {exc}")
                continue
            if not finished:
                keep.append(row)
        return keep

    def _append(self, sequence: _Sequence, token: int, now: float) -> bool:
        """Record one token, publish the text it completes; True when the sequence ended."""
        stats = sequence.handle.stats
        if stats.first_token_at is None:
            stats.first_token_at = now
        stats.token_times.append(now)
        stats.completion_tokens += 1  # counted as generated, so a client that leaves mid-stream is billed right
        sequence.ids.append(token)
        sequence.unsent_ids.append(token)
        reason = None
        if token in sequence.stop_ids:
            reason = "stop"
        elif len(sequence.ids) >= sequence.params.max_new_tokens:
            reason = "length"
        text, hit = sequence.stops.feed(sequence.detokenizer.push(token))
        if hit:
            reason = "stop"
        if reason is not None:
            self._finish(sequence, reason, text=text, stopped=hit)
            return True
        if text:
            sequence.text.append(text)
            sequence.handle._publish(TokenEvent(text=text, token_ids=tuple(sequence.unsent_ids)))
            sequence.unsent_ids = []
        return False

    def _finish(
        self, sequence: _Sequence, reason: str, error: str | None = None, text: str = "", stopped: bool = False
    ) -> None:
        """Publish the last event and the result; call the on_finish hooks."""
        if sequence.finished:
            return
        sequence.finished = True
        if not stopped and reason != "cancelled":
            tail, stopped = sequence.stops.feed(sequence.detokenizer.flush())
            text += tail if stopped else tail + sequence.stops.flush()
        sequence.text.append(text)
        handle = sequence.handle
        stats = handle.stats
        stats.finished_at = time.monotonic()
        stats.completion_tokens = len(sequence.ids)
        stats.finish_reason = reason
        result = GenerationResult(
            request_id=handle.request_id,
            text="".join(sequence.text),
            token_ids=tuple(sequence.ids),
            finish_reason=reason,
            stats=stats,
            error=error,
        )
        event = TokenEvent(
            text=text, token_ids=tuple(sequence.unsent_ids), finished=True, finish_reason=reason, error=error
        )
        handle._publish(event, result)
        with self._lock:
            self._in_flight -= 1
            if stats.e2e_s is not None and reason in ("stop", "length"):
                self._typical_e2e_s += 0.2 * (stats.e2e_s - self._typical_e2e_s)
            if self._in_flight == 0:
                self._idle.notify_all()
        for hook in list(self.on_finish):
            try:
                hook(handle)
            except Exception:
                log.exception("on_finish hook %r failed", hook)


def prefill_groups(sequences: list[_Sequence], max_padding: float = 0.25) -> list[list[_Sequence]]:
    """Split admitted requests into groups of similar prompt length, shortest first.

    A padded prefill computes every row at the longest prompt's length (and needs an
    explicit attention mask, which rules out the fused causal kernel); a group grows only
    while padding stays under `max_padding` of its computed positions.
    """
    groups: list[list[_Sequence]] = []
    real = 0
    for sequence in sorted(sequences, key=lambda s: len(s.request.prompt_ids)):
        length = len(sequence.request.prompt_ids)
        if groups and (len(groups[-1]) + 1) * length * (1 - max_padding) <= real + length:
            groups[-1].append(sequence)
            real += length
        else:
            groups.append([sequence])
            real = length
    return groups


def _abandoned(sequence: _Sequence, now: float) -> str | None:
    """Why a sequence must leave without another token: "cancelled", "deadline", or None."""
    if sequence.handle.cancelled:
        return "cancelled"
    deadline = sequence.request.deadline
    if deadline is not None and now >= deadline:
        return "deadline"
    return None


def _eos_ids(tokenizer, generation_config) -> set[int]:
    """The tokenizer's EOS plus every EOS id the model's generation config names."""
    ids = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    configured = getattr(generation_config, "eos_token_id", None)
    if isinstance(configured, int):
        ids.add(configured)
    elif configured:
        ids.update(int(i) for i in configured)
    return ids
