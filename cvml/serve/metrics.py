"""Prometheus metrics of `cvml serve`, under vLLM's names where vLLM has one.

Dashboards and alerts written for a vLLM deployment (`vllm:time_to_first_token_seconds`,
`vllm:e2e_request_latency_seconds`, `vllm:num_requests_running`, ...) work unchanged on
cvml's own engine; what vLLM has no name for is prefixed `cvml_`. Every series carries
`model_name` (the served version, e.g. `cv@3`) and `variant` (the A/B arm), so a canary
and its control can be compared on one graph.

The request log's health is exported too (`cvml_request_log_*`): rows it failed to write,
entries dropped with its queue full or kept without text while degraded, its queue depth,
and 1 in `cvml_request_log_degraded` while it cannot write. Alert on that gauge: the server
goes on serving (and /ready stays 200, saying "degraded") while nothing is logged.

Each app owns its `CollectorRegistry`, so several servers (or tests) in one process never
share counters.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from cvml.serve.types import RequestStats

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LABELS = ("model_name", "variant")
# Seconds; dense below 1 s, where the web app's 2 s budget is decided.
_LATENCY_BUCKETS = (
    0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 60.0
)
_TOKEN_LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5
)
_TOKEN_COUNT_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)

# (variant, model_name, running, waiting) for every engine currently serving.
EngineLoad = Callable[[], Iterable[tuple[str, str, int, int]]]


class _EngineLoadCollector(Collector):
    """Running/waiting counts read from the engines at scrape time (never stale)."""

    def __init__(self, load: EngineLoad):
        self._load = load

    def collect(self):
        running = GaugeMetricFamily("vllm:num_requests_running", "Requests in the decoding batch.", labels=_LABELS)
        waiting = GaugeMetricFamily("vllm:num_requests_waiting", "Requests queued for the batch.", labels=_LABELS)
        for variant, model_name, n_running, n_waiting in self._load():
            running.add_metric([model_name, variant], n_running)
            waiting.add_metric([model_name, variant], n_waiting)
        yield running
        yield waiting


class _RequestLogCollector(Collector):
    """The request log's health as of the last `ServeMetrics.observe_request_log`."""

    def __init__(self) -> None:
        self.health: Mapping[str, Any] | None = None

    def collect(self):
        health = self.health
        if health is None:
            return
        yield CounterMetricFamily(
            "cvml_request_log_failed_writes", "Request-log rows that could not be written (after retries).",
            value=health["failed_writes"],
        )
        yield CounterMetricFamily(
            "cvml_request_log_dropped", "Requests not logged at all: the request log's queue was full.",
            value=health["dropped"],
        )
        yield CounterMetricFamily(
            "cvml_request_log_text_dropped", "Requests logged without their text: the request log was degraded.",
            value=health["text_dropped"],
        )
        yield GaugeMetricFamily(
            "cvml_request_log_queue_depth", "Requests waiting to be written to the request log.", value=health["queued"]
        )
        yield GaugeMetricFamily(
            "cvml_request_log_degraded", "1 while the request log cannot write (serving goes on, nothing is stored).",
            value=1 if health["status"] == "degraded" else 0,
        )


class ServeMetrics:
    """The metrics one server exposes on `/metrics`.

    Args:
        engine_load: called at every scrape for each engine's running and waiting counts.
    """

    def __init__(self, engine_load: EngineLoad):
        self.registry = CollectorRegistry()
        r = self.registry
        self.ttft = Histogram(
            "vllm:time_to_first_token_seconds", "Time from arrival to the first generated token.",
            _LABELS, buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.inter_token = Histogram(
            "vllm:inter_token_latency_seconds", "Time between two generated tokens of one request.",
            _LABELS, buckets=_TOKEN_LATENCY_BUCKETS, registry=r,
        )
        self.e2e = Histogram(
            "vllm:e2e_request_latency_seconds", "Time from arrival to the last generated token.",
            _LABELS, buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.queue = Histogram(
            "vllm:request_queue_time_seconds", "Time a request waited before joining the batch.",
            _LABELS, buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.prompt_tokens = Counter("vllm:prompt_tokens", "Prompt tokens processed.", _LABELS, registry=r)
        self.generation_tokens = Counter("vllm:generation_tokens", "Tokens generated.", _LABELS, registry=r)
        self.request_prompt_tokens = Histogram(
            "vllm:request_prompt_tokens", "Prompt length of finished requests.",
            _LABELS, buckets=_TOKEN_COUNT_BUCKETS, registry=r,
        )
        self.request_generation_tokens = Histogram(
            "vllm:request_generation_tokens", "Generated length of finished requests.",
            _LABELS, buckets=_TOKEN_COUNT_BUCKETS, registry=r,
        )
        self.request_success = Counter(
            "vllm:request_success", "Finished generations by finish reason.",
            (*_LABELS, "finished_reason"), registry=r,
        )
        self.http_requests = Counter(
            "cvml_http_requests", "HTTP responses by route and status code.", ("route", "status"), registry=r
        )
        self.checks_flagged = Counter(
            "cvml_checks_flagged", "Domain responses flagged by a safety check.", (*_LABELS, "check"), registry=r
        )
        self.guard = Counter(
            "cvml_guard_outcomes", "Rewrites by guard outcome (passed, retried, flagged, blocked).",
            (*_LABELS, "action"), registry=r,
        )
        self.grounding_refused = Counter(
            "cvml_grounding_refused_tokens", "Tokens the model ranked first that grounded decoding refused.",
            _LABELS, registry=r,
        )
        self.reloads = Counter(
            "cvml_model_reloads", "Reload attempts per variant by outcome (swapped, unchanged, failed).",
            ("variant", "outcome"), registry=r,
        )
        self.model_info = Gauge(
            "cvml_model_info", "1 for the model version each variant serves now.",
            ("variant", "model_name", "version"), registry=r,
        )
        self._info_labels: dict[str, tuple[str, str, str]] = {}
        self.ready = Gauge("cvml_ready", "1 when every variant is loaded and the server is not draining.", registry=r)
        r.register(_EngineLoadCollector(engine_load))
        self._request_log = _RequestLogCollector()
        r.register(self._request_log)

    def observe(self, variant: str, model_name: str, stats: RequestStats) -> None:
        """Record the latency figures and token counts of one finished generation."""
        labels = (model_name, variant)
        if stats.ttft_s is not None:
            self.ttft.labels(*labels).observe(stats.ttft_s)
        if stats.e2e_s is not None:
            self.e2e.labels(*labels).observe(stats.e2e_s)
        if stats.queue_s is not None:
            self.queue.labels(*labels).observe(stats.queue_s)
        inter_token = self.inter_token.labels(*labels)
        for gap in stats.inter_token_s:
            inter_token.observe(gap)
        self.prompt_tokens.labels(*labels).inc(stats.prompt_tokens)
        self.generation_tokens.labels(*labels).inc(stats.completion_tokens)
        self.request_prompt_tokens.labels(*labels).observe(stats.prompt_tokens)
        self.request_generation_tokens.labels(*labels).observe(stats.completion_tokens)
        self.request_success.labels(*labels, stats.finish_reason or "unknown").inc()

    def observe_unfinished(self, variant: str, model_name: str, stats: RequestStats) -> None:
        """Count the tokens of a generation abandoned mid-way (its client left): they were
        computed, and streamed ones were delivered."""
        labels = (model_name, variant)
        self.prompt_tokens.labels(*labels).inc(stats.prompt_tokens)
        self.generation_tokens.labels(*labels).inc(stats.completion_tokens)

    def set_model(self, variant: str, model_name: str, version: int | None) -> None:
        """Point `cvml_model_info` of a variant at the version it serves now (dropping the old one)."""
        labels = (variant, model_name, "" if version is None else str(version))
        previous = self._info_labels.get(variant)
        if previous is not None and previous != labels:
            self.model_info.remove(*previous)
        self._info_labels[variant] = labels
        self.model_info.labels(*labels).set(1)

    def observe_request_log(self, health: Mapping[str, Any] | None) -> None:
        """Export the request log's `RequestLog.health()` (None: the server keeps no log)."""
        self._request_log.health = health

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
