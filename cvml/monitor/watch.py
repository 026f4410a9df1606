"""`cvml monitor watch`: evaluate every interval, alert on a change of state, record when
retraining is recommended, keep the gauges current.

    watcher = Watcher(Monitor(spec), webhook=url, gauges=MonitorGauges())
    watcher.run(interval_s=900)                 # until stopped (or max_ticks)

States: ok, drift, quality_alert, drift_and_quality_alert. The first state is taken to be
ok, so a watcher that starts on a drifting window alerts at once and one that starts on a
quiet window says nothing. A change is posted once; while the webhook fails the change
stays pending and each later tick tries again — and if the state goes back to what was
last delivered before that, there is nothing left to say. An evaluation that cannot run
(an empty window at night, the log's database restarting) is logged and counted; the
watcher keeps the state it had and goes on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cvml.errors import CvmlError
from cvml.monitor.alerts import (
    Delivery,
    alert_payload,
    post_alert,
    recommend_retraining,
)
from cvml.monitor.api import Monitor, MonitorResult
from cvml.monitor.gauges import MonitorGauges

_log = logging.getLogger("cvml.monitor")


@dataclass
class Tick:
    """One evaluation of the watcher."""

    at: str
    state: str
    changed: bool
    result: MonitorResult | None = None
    error: str | None = None
    delivery: Delivery | None = None
    event_id: int | None = None
    report: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at, "state": self.state, "changed": self.changed, "error": self.error,
            "delivery": self.delivery.to_dict() if self.delivery else None, "event_id": self.event_id,
            "report": self.report, "reasons": self.result.reasons if self.result else [],
        }  # fmt: skip


class Watcher:
    """Args:
    monitor: what is evaluated.
    webhook: where state changes are posted (None: no alerts).
    gauges: updated after every evaluation.
    record_events: record `retrain_recommended` in the registry when the inputs start drifting.
    out: write each evaluation's report folder here (the latest one).
    post: the poster (tests and retries use `post_alert`'s signature).
    """

    def __init__(
        self,
        monitor: Monitor,
        *,
        webhook: str | None = None,
        gauges: MonitorGauges | None = None,
        record_events: bool = True,
        out: str | Path | None = None,
        recipe: dict[str, Any] | None = None,
        post: Callable[..., Delivery] = post_alert,
    ):
        self.monitor, self.webhook, self.gauges = monitor, webhook, gauges
        self.record_events, self.out, self.recipe, self.post = record_events, out, recipe, post
        self.state = "ok"  # what the last evaluation found
        self.announced = "ok"  # what the webhook was last told

    def tick(self, now: datetime | None = None) -> Tick:
        """One evaluation (of the window ending `now`): state, alert, event, gauges."""
        stamp = (now or datetime.now().astimezone()).isoformat(timespec="seconds")
        try:
            result = self.monitor.report(end=now)
        except CvmlError as exc:
            _log.error("monitor evaluation skipped: %s%s", exc.message, f" ({exc.hint})" if exc.hint else "")
            if self.gauges is not None:
                self.gauges.failed_run()
            return Tick(stamp, self.state, False, error=exc.message)
        report = None
        if self.out is not None:
            from cvml.monitor.report import write_report

            report = write_report(result, self.out, self.recipe)["html"]
        if self.gauges is not None:
            self.gauges.observe(result)
        previous, self.state = self.state, result.state
        tick = Tick(stamp, result.state, result.state != previous, result=result, report=report)
        if self.record_events and result.drift.detected and "drift" not in previous:
            try:
                tick.event_id = recommend_retraining(result, self.monitor.registry, report)
            except CvmlError as exc:
                _log.error("cannot record retrain_recommended in the registry: %s", exc.message)
        if self.webhook and result.state != self.announced:
            tick.delivery = self.post(self.webhook, alert_payload(result, self.announced, report))
            if tick.delivery.ok:
                self.announced = result.state
            elif self.gauges is not None:
                self.gauges.failed_webhook()
        elif not self.webhook:
            self.announced = result.state
        return tick

    def run(
        self,
        interval_s: float,
        *,
        max_ticks: int | None = None,
        stop: threading.Event | None = None,
        on_tick: Callable[[Tick], None] | None = None,
    ) -> int:
        """Tick every `interval_s` (measured from each tick's start) until `stop` is set or
        `max_ticks` ran; returns the ticks run."""
        stop = stop or threading.Event()
        ticks = 0
        while not stop.is_set():
            started = time.monotonic()
            tick = self.tick()
            ticks += 1
            if on_tick is not None:
                on_tick(tick)
            if max_ticks is not None and ticks >= max_ticks:
                break
            stop.wait(max(0.0, interval_s - (time.monotonic() - started)))
        return ticks
