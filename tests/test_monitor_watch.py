"""`cvml monitor watch`'s loop on a seeded log: alerts to a real HTTP receiver on 127.0.0.1
only when the state changes, a failing or unreachable webhook retried at the next tick
while the watcher goes on, the registry's `retrain_recommended` event with its evidence,
and the gauges on a real /metrics."""

from __future__ import annotations

import functools
import json
import threading
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from monitor_data import REFERENCE, day_window, seed_log
from prometheus_client.parser import text_string_to_metric_families

from cvml.monitor import Monitor
from cvml.monitor.alerts import RETRAIN_ACTION, post_alert
from cvml.monitor.gauges import MonitorGauges
from cvml.monitor.watch import Watcher
from cvml.recipe import MonitorSpec
from cvml.registry import Registry


class Receiver:
    """A webhook on 127.0.0.1: records each JSON body; answers 500 to the first `fail` posts."""

    def __init__(self, fail: int = 0):
        self.bodies: list[dict] = []
        self.attempts = 0
        self.fail = fail
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                receiver.attempts += 1
                if receiver.attempts <= receiver.fail:
                    self.send_response(500)
                else:
                    receiver.bodies.append(body)
                    self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/cv-ml"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    folder = tmp_path_factory.mktemp("watch")
    seed_log(folder / "requests.db", folder / "registry.db", folder)
    return folder


def _watcher(seeded, **kw) -> Watcher:
    spec = MonitorSpec(reference=REFERENCE, window="1d", model="sim@1")
    monitor = Monitor(spec, log=seeded / "requests.db", registry=seeded / "registry.db", seed=5)
    return Watcher(monitor, post=functools.partial(post_alert, sleep=lambda s: None), **kw)


def _end(name: str) -> datetime:
    return day_window(name).end


def test_alerts_only_on_a_change_of_state_and_records_retraining_once_per_drift(seeded):
    receiver = Receiver()
    try:
        watcher = _watcher(seeded, webhook=receiver.url)
        days = ["no_drift", "language_shift", "language_shift", "regressed_model", "no_drift", "longer_inputs"]
        ticks = [watcher.tick(now=_end(name)) for name in days]
    finally:
        receiver.close()
    states = [t.state for t in ticks]
    assert states[0] == "ok" and "drift" in states[1] and states[2] == states[1]
    assert states[3] == "quality_alert" and states[4] == "ok" and "drift" in states[5]
    changes = [(before, after) for before, after in zip(["ok", *states], states) if before != after]
    assert [(b["cvml"]["previous_state"], b["cvml"]["state"]) for b in receiver.bodies] == changes
    assert [t.delivery is not None for t in ticks] == [False, True, False, True, True, True]
    first = receiver.bodies[0]
    assert first["text"].startswith(":rotating_light: cvml monitor: sim@1 is now")
    assert "language" in first["cvml"]["drifted_features"] and first["cvml"]["retrain_recommended"] is True
    assert receiver.bodies[2]["text"].startswith(":white_check_mark:")  # back to ok

    events = [e for e in Registry(seeded / "registry.db").events("sim") if e.action == RETRAIN_ACTION]
    assert [e.id for e in events] == [ticks[1].event_id, ticks[5].event_id]  # entering drift, twice; not the repeat
    evidence = json.loads(events[0].reason)
    assert events[0].to_version == 1 and events[0].actor == "cvml monitor"
    assert evidence["why"] == "input drift" and "language" in evidence["drifted_features"]
    assert evidence["classifier_auc"] > 0.6 and evidence["words_now_common"]


def test_a_failing_webhook_is_retried_at_the_next_tick_and_the_watcher_goes_on(seeded):
    receiver = Receiver(fail=3)  # the first delivery's three attempts all get a 500
    gauges = MonitorGauges()
    try:
        watcher = _watcher(seeded, webhook=receiver.url, gauges=gauges, record_events=False)
        failed = watcher.tick(now=_end("language_shift"))
        assert failed.delivery is not None and not failed.delivery.ok and failed.delivery.attempts == 3
        assert "answered 500" in failed.delivery.error and receiver.bodies == []
        retried = watcher.tick(now=_end("language_shift"))  # same state: the pending change goes out now
        assert retried.delivery.ok and retried.delivery.attempts == 1
        assert [(b["cvml"]["previous_state"], b["cvml"]["state"]) for b in receiver.bodies] == [("ok", retried.state)]
        assert watcher.tick(now=_end("language_shift")).delivery is None  # delivered: nothing more to say
    finally:
        receiver.close()
    assert _metric(gauges.render().decode(), "cvml_monitor_webhook_failures_total") == 1

    gone = Receiver()
    gone.close()  # nothing listens on its port any more
    watcher = _watcher(seeded, webhook=gone.url, record_events=False)
    tick = watcher.tick(now=_end("regressed_model"))
    assert tick.state == "quality_alert" and not tick.delivery.ok and "cannot reach the webhook" in tick.delivery.error
    assert watcher.tick(now=_end("no_drift")).state == "ok"  # it keeps evaluating


def test_an_evaluation_that_cannot_run_keeps_the_state_and_is_counted(seeded):
    gauges = MonitorGauges("sim@1")
    watcher = _watcher(seeded, gauges=gauges)
    assert watcher.tick(now=_end("regressed_model")).state == "quality_alert"
    quiet = watcher.tick(now=datetime(2026, 10, 1, tzinfo=timezone.utc))  # no request that day
    assert quiet.error.startswith("no request to /v1/cv/rewrite") and quiet.state == "quality_alert" and not quiet.changed
    assert _metric(gauges.render().decode(), "cvml_monitor_errors_total") == 1
    stop = threading.Event()
    seen = []
    watcher.run(0.0, max_ticks=2, stop=stop, on_tick=seen.append)
    assert len(seen) == 2  # the window of "now" is empty: both ticks are skipped, the loop goes on


def test_gauges_are_served_on_metrics(seeded):
    gauges = MonitorGauges()
    port = gauges.serve(0)
    watcher = _watcher(seeded, gauges=gauges)
    tick = watcher.tick(now=_end("regressed_model"))
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    rates = tick.result.quality.scopes["all"]
    assert _metric(text, "cvml_fabrication_rate", model="sim@1", variant="all") == pytest.approx(rates["fabrication_rate"].value)
    assert _metric(text, "cvml_error_rate", model="sim@1", variant="all") == pytest.approx(rates["error_rate"].value)
    assert _metric(text, "cvml_drift_share", model="sim@1") == pytest.approx(tick.result.drift.share)
    assert _metric(text, "cvml_monitor_state", model="sim@1", state="quality_alert") == 1
    assert _metric(text, "cvml_monitor_state", model="sim@1", state="ok") == 0
    assert _metric(text, "cvml_monitor_window_requests", model="sim@1") == 400
    assert _metric(text, "cvml_domain_classifier_auc", model="sim@1") == pytest.approx(tick.result.drift.classifier.auc)
    assert _metric(text, "cvml_monitor_last_run_timestamp_seconds", model="sim@1") > datetime.now().timestamp() - 60


def _metric(text: str, name: str, **labels) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    raise AssertionError(f"no sample {name} {labels}")


def test_the_window_of_now_is_the_default(seeded):
    """Without `now`, a tick evaluates the window ending at the current time."""
    watcher = _watcher(seeded)
    tick = watcher.tick()
    assert tick.error is not None and "no request" in tick.error
    assert datetime.fromisoformat(tick.at) > datetime.now(timezone.utc) - timedelta(minutes=1)
