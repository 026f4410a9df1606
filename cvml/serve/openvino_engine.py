"""`cvml serve --engine openvino`: OpenVINO GenAI's continuous batching behind cvml's API.

The model is a folder written by `cvml export openvino`. OpenVINO GenAI's
`ContinuousBatchingPipeline` owns the KV cache (paged, with prefix caching: a prompt that
starts like an earlier one — the shared system prompt, the same CV before another job
description — reuses its blocks) and schedules prefill chunks together with decode steps.
Everything else is cvml's: the admission queue, deadlines, cancellation, the detokenizer
and stop strings (`cvml.serve.engine`'s own bookkeeping, inherited), and above the engine
the A/B split, the checks, the guard, the request log and the metrics.

What this engine cannot do: apply a per-request token constraint. OpenVINO GenAI takes no
per-request logits hook, so grounded decoding is off here (`/v1/cv/rewrite` says so in its
`guard.grounding`; the guard still checks every answer and resamples what fails), and
`response_format` is refused with a 400. OpenVINO GenAI's own structured output was tried
and left out: its grammar lets tokens that decode to raw control characters into JSON
strings (cvml's engine masks those tokens itself), so its JSON is not always valid.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import time
from pathlib import Path

from cvml.errors import ConfigError, ModelError
from cvml.modelio import ModelRef
from cvml.openvino_runtime import MODEL_XML, cpu_properties
from cvml.serve.engine import Engine, _abandoned, _eos_ids, _Sequence
from cvml.serve.pool import ServedModel

log = logging.getLogger(__name__)


def require_openvino() -> None:
    """Raises ConfigError (exit 2) with the install command where OpenVINO GenAI is missing."""
    if importlib.util.find_spec("openvino_genai") is None:
        raise ConfigError(
            "OpenVINO GenAI is not installed: pip install 'cvml[openvino]'",
            hint="or serve with cvml's own engine: --engine cvml (the default)",
        )


class OpenVinoEngine(Engine):
    """The engine contract of `cvml.serve.types` on an OpenVINO GenAI model folder.

    Args:
        folder: a `cvml export openvino` folder (IR, OpenVINO tokenizer, tokenizer files).
        tokenizer: the model's transformers tokenizer (prompts and detokenizing are cvml's).
        max_batch_size: sequences scheduled together; more wait in cvml's queue.
        max_queue, batch_wait_ms: as cvml's engine.
        cache_gb: KV-cache memory the pipeline reserves.
        prefix_caching: reuse the KV blocks of a prompt prefix seen before.
        num_threads: CPU threads of the runtime (default: all cores).
    """

    supports_constraints = False  # no per-token hook: grounded decoding is off, the guard checks

    def __init__(
        self,
        folder: Path,
        tokenizer,
        *,
        max_batch_size: int = 16,
        max_queue: int = 64,
        batch_wait_ms: float = 2.0,
        cache_gb: float = 1.0,
        prefix_caching: bool = True,
        num_threads: int | None = None,
    ):
        import openvino_genai

        self.tokenizer = tokenizer
        self.max_batch_size = max_batch_size
        self.max_queue = max_queue
        self.batch_wait_s = batch_wait_ms / 1000
        self.num_threads = num_threads
        self.on_finish = []
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        self.context_length = int(config.get("max_position_embeddings") or 2048)
        self.vocab_size = int(config["vocab_size"])
        generation = _generation_config(folder)
        self.eos_ids = frozenset(_eos_ids(tokenizer, generation))
        self.default_penalty = float(getattr(generation, "repetition_penalty", None) or 1.0)
        self._init_queue()

        scheduler = openvino_genai.SchedulerConfig()
        scheduler.cache_size = max(1, round(cache_gb))
        scheduler.max_num_seqs = max_batch_size
        scheduler.enable_prefix_caching = prefix_caching
        scheduler.dynamic_split_fuse = True
        self.pipeline = openvino_genai.ContinuousBatchingPipeline(
            str(folder), openvino_genai.Tokenizer(str(folder)), scheduler, "CPU", **cpu_properties(num_threads)
        )
        self._ids = 0
        self._handles: dict[int, object] = {}  # id(sequence) -> the pipeline's GenerationHandle

    # ----------------------------------------------------------------- engine thread

    def _run(self) -> None:
        try:
            self._warm_up()
        except Exception:
            log.exception("engine warm-up failed")
        self._ready.set()
        while True:
            admitted, dropped = self._schedule()
            for sequence, reason in dropped:
                self._finish(sequence, reason)
            if admitted is None:
                break
            try:
                for sequence in admitted:
                    self._add(sequence)
                if self._running:
                    self.pipeline.step()
                    self._collect()
            except Exception as exc:  # a failure of the pipeline itself: fail the batch, keep serving
                log.exception("engine step failed")
                for sequence in self._running:
                    self._drop(sequence)
                    self._finish(sequence, "error", f"engine step failed: {exc}")
                self._running = []
        for sequence in self._running + list(self._waiting):
            self._drop(sequence)
            self._finish(sequence, "error", "the engine stopped before the request finished")
        self._running = []
        self._waiting.clear()

    def _warm_up(self) -> None:
        """One short generation, so the first request does not pay for compiling kernels."""
        import openvino_genai

        config = openvino_genai.GenerationConfig()
        config.max_new_tokens = 2
        config.apply_chat_template = False
        self.pipeline.generate([_tensor([min(self.eos_ids, default=0)] * 4)], [config])

    def _add(self, sequence: _Sequence) -> None:
        self._ids += 1
        handle = self.pipeline.add_request(self._ids, _tensor(sequence.request.prompt_ids), self._config(sequence))
        self._handles[id(sequence)] = handle
        sequence.handle.stats.scheduled_at = time.monotonic()
        self._running.append(sequence)

    def _collect(self) -> None:
        """Publish the tokens each running request got this step; retire finished ones."""
        now = time.monotonic()
        keep = []
        for sequence in self._running:
            handle = self._handles[id(sequence)]
            reason = _abandoned(sequence, now)
            if reason:
                self._drop(sequence)
                self._finish(sequence, reason)
                continue
            ended = False
            if handle.can_read():
                for output in handle.read().values():
                    for token in output.generated_ids:
                        if self._append(sequence, int(token), now):
                            ended = True
                            break
                    if ended:
                        break
            if not ended and _finished(handle):
                # The pipeline stopped it (its EOS, which it does not return as a token).
                reason = "length" if len(sequence.ids) >= sequence.params.max_new_tokens else "stop"
                self._finish(sequence, reason)
                ended = True
            if ended:
                self._drop(sequence)
            else:
                keep.append(sequence)
        self._running = keep

    def _drop(self, sequence: _Sequence) -> None:
        handle = self._handles.pop(id(sequence), None)
        if handle is not None and not _finished(handle):
            handle.cancel()

    def _config(self, sequence: _Sequence):
        import openvino_genai

        params = sequence.params
        config = openvino_genai.GenerationConfig()
        config.apply_chat_template = False
        config.max_new_tokens = params.max_new_tokens
        config.repetition_penalty = params.repetition_penalty or self.default_penalty
        if params.ignore_eos:
            config.ignore_eos = True
            config.min_new_tokens = params.max_new_tokens
        else:
            config.stop_token_ids = set(self.eos_ids)
        if params.temperature > 0:
            config.do_sample = True
            config.temperature = params.temperature
            config.top_p = params.top_p
            config.rng_seed = params.seed if params.seed is not None else time.time_ns() % 2**31
        return config


def _finished(handle) -> bool:
    import openvino_genai

    return handle.get_status() != openvino_genai.GenerationStatus.RUNNING


def _tensor(ids):
    import numpy as np
    import openvino as ov

    return ov.Tensor(np.asarray([list(ids)], dtype=np.int64))


def _generation_config(folder: Path):
    from transformers import GenerationConfig

    try:
        return GenerationConfig.from_pretrained(folder)
    except OSError:
        return None


def openvino_opener(spec):
    """Opens a version by starting an OpenVinoEngine on its `cvml export openvino` folder."""

    def open_model(variant: str, ref: ModelRef) -> ServedModel:
        from cvml.modelio import load_inference_tokenizer, verify_version

        started = time.perf_counter()
        _check_export(ref)
        if ref.registered is not None:
            verify_version(ref.registered)
        tokenizer = load_inference_tokenizer(ref.path)
        _check_template(ref, tokenizer)
        engine = OpenVinoEngine(
            ref.path, tokenizer, max_batch_size=spec.max_batch_size, max_queue=spec.max_queue,
            batch_wait_ms=spec.batch_wait_ms,
        )
        engine.start()
        return ServedModel(
            variant=variant, model_ref=ref, tokenizer=tokenizer, engine=engine, context_length=engine.context_length,
            release=engine.stop, load_s=time.perf_counter() - started,
        )

    return open_model


def _check_export(ref: ModelRef) -> None:
    """Raises ModelError unless `ref` is an OpenVINO export, naming the command that makes one."""
    fmt = (ref.manifest.get("export") or {}).get("format")
    if fmt != "openvino" or not (ref.path / MODEL_XML).is_file():
        raise ModelError(
            f"{ref.ref} is not an OpenVINO export",
            hint=f"Export it first (cvml export openvino {ref.ref} --weights int8) and serve the export.",
        )


def _check_template(ref: ModelRef, tokenizer) -> None:
    """The chat-template guard of `load_for_inference`, for exported folders."""
    import hashlib

    expected = ref.manifest.get("chat_template_sha256")
    if expected and hashlib.sha256(tokenizer.chat_template.encode()).hexdigest() != expected:
        raise ModelError(
            f"{ref.ref}: the stored chat template differs from the one the model was trained with",
            hint="Export the model again; prompts built with another template are out of distribution.",
        )

