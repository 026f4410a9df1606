"""Prometheus gauges of `cvml monitor watch`, on its own /metrics (next to serve's, not in
it: the monitor may run on another host, and one watcher covers every replica).

Names: cvml_drift_share, cvml_drift_detected, cvml_feature_drifted{feature},
cvml_domain_classifier_auc, cvml_<rate> for every quality rate (cvml_fabrication_rate,
cvml_pii_leak_rate, cvml_error_rate, ..., per variant), cvml_quality_alerts,
cvml_monitor_window_requests, cvml_monitor_state{state} (1 for the current one),
cvml_monitor_last_run_timestamp_seconds, and the counters
cvml_monitor_webhook_failures_total and cvml_monitor_errors_total. Every series carries
`model` (the monitored version).
"""

from __future__ import annotations

import math
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from cvml.monitor.api import STATES, MonitorResult
from cvml.monitor.quality import RATES


class MonitorGauges:
    def __init__(self, model: str = ""):
        self.model = model
        self.registry = CollectorRegistry()
        r, labels = self.registry, ("model",)
        self.drift_share = Gauge("cvml_drift_share", "Share of tested input features that drifted.", labels, registry=r)
        self.drift_detected = Gauge("cvml_drift_detected", "1 when the input-drift verdict is drift.", labels, registry=r)
        self.feature = Gauge("cvml_feature_drifted", "1 when the feature drifted, 0 when not.", ("model", "feature"),
                             registry=r)  # fmt: skip
        self.auc = Gauge("cvml_domain_classifier_auc", "Held-out ROC AUC of the domain classifier.", labels, registry=r)
        self.rates = {
            name: Gauge(f"cvml_{name}", f"{name.replace('_', ' ')} of the window.", ("model", "variant"), registry=r)
            for name in RATES
        }
        self.alerts = Gauge("cvml_quality_alerts", "Quality alerts of the last evaluation.", labels, registry=r)
        self.requests = Gauge("cvml_monitor_window_requests", "Requests in the evaluated window.", labels, registry=r)
        self.state = Gauge("cvml_monitor_state", "1 for the monitor's current state.", ("model", "state"), registry=r)
        self.last_run = Gauge("cvml_monitor_last_run_timestamp_seconds", "When the last evaluation ended.", labels,
                              registry=r)  # fmt: skip
        self.webhook_failures = Counter("cvml_monitor_webhook_failures", "Alerts the webhook did not take.", labels,
                                        registry=r)  # fmt: skip
        self.errors = Counter("cvml_monitor_errors", "Evaluations that could not run (empty window, log down).",
                              labels, registry=r)  # fmt: skip

    def observe(self, result: MonitorResult) -> None:
        m = result.model.ref if result.model else self.model
        self.model = m
        self.drift_share.labels(m).set(math.nan if result.drift.share is None else result.drift.share)
        self.drift_detected.labels(m).set(int(result.drift.detected))
        for feature in result.drift.features:
            if feature.drifted is not None:
                self.feature.labels(m, feature.name).set(int(feature.drifted))
        auc = result.drift.classifier.auc
        self.auc.labels(m).set(math.nan if auc is None else auc)
        for scope, rates in result.quality.scopes.items():
            for name, rate in rates.items():
                self.rates[name].labels(m, scope).set(math.nan if rate.value is None else rate.value)
        self.alerts.labels(m).set(len(result.quality.alerts))
        self.requests.labels(m).set(result.current_requests)
        for state in STATES:
            self.state.labels(m, state).set(int(state == result.state))
        self.last_run.labels(m).set(time.time())

    def failed_webhook(self) -> None:
        self.webhook_failures.labels(self.model).inc()

    def failed_run(self) -> None:
        self.errors.labels(self.model).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def serve(self, port: int, host: str = "127.0.0.1") -> int:
        """Serve /metrics on host:port in a daemon thread; returns the port (0 picks a free one)."""
        from prometheus_client import start_http_server

        server, _ = start_http_server(port, addr=host, registry=self.registry)
        return server.server_port
