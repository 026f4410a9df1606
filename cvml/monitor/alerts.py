"""Alerts: one JSON POST to a webhook when the monitor's state changes, and the registry's
`retrain_recommended` audit event when the inputs drift.

The body is Slack-compatible (its `text` is what an incoming webhook shows) and carries the
same facts as data under `cvml` for other receivers. A post that fails (unreachable,
timeout, non-2xx) is retried with backoff; the caller keeps an undelivered change and
tries again at its next evaluation.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cvml.monitor.api import MonitorResult

_log = logging.getLogger("cvml.monitor")
RETRAIN_ACTION = "retrain_recommended"
_LABELS = {"ok": "NO DRIFT", "drift": "DRIFT", "quality_alert": "QUALITY ALERT",
           "drift_and_quality_alert": "DRIFT + QUALITY ALERT"}  # fmt: skip
_BACKOFF_S = (0.5, 2.0)  # waits between the attempts of one delivery


@dataclass
class Delivery:
    ok: bool
    attempts: int
    status: int | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def alert_payload(result: MonitorResult, previous: str, report: str | None = None) -> dict[str, Any]:
    """The webhook body for a change from `previous` to the result's state."""
    state, who = result.state, result.model.ref if result.model else result.endpoint
    icon = ":white_check_mark:" if state == "ok" else ":rotating_light:"
    lines = [f"{icon} cvml monitor: {who} is now {_LABELS[state]} (was {_LABELS.get(previous, previous)})"]
    lines += [f"• {reason}" for reason in result.reasons]
    lines.append(f"window {result.window.label()} ({result.current_requests} requests) vs {result.reference.label}")
    if report:
        lines.append(f"report: {report}")
    return {
        "text": "\n".join(lines),
        "cvml": {
            "state": state,
            "previous_state": previous,
            "model": who,
            "window": result.window.to_dict(),
            "requests": result.current_requests,
            "reference": result.reference.to_dict(),
            "drift_share": result.drift.share,
            "drifted_features": result.drift.drifted,
            "classifier_auc": result.drift.classifier.auc,
            "quality_alerts": [t.describe() for t in result.quality.alerts],
            "retrain_recommended": result.drift.detected,
            "report": report,
        },
    }


def post_alert(
    url: str,
    payload: dict[str, Any],
    *,
    attempts: int = 3,
    timeout_s: float = 10.0,
    sleep: Callable[[float], None] = time.sleep,
) -> Delivery:
    """POST `payload` as JSON; 2xx is delivered. Never raises: a failure is the Delivery's error."""
    import httpx

    error, status = None, None
    for attempt in range(1, attempts + 1):
        try:
            response = httpx.post(url, json=payload, timeout=timeout_s)
            status = response.status_code
            if 200 <= status < 300:
                return Delivery(True, attempt, status)
            error = f"the webhook answered {status}"
        except httpx.HTTPError as exc:
            error = f"cannot reach the webhook: {type(exc).__name__}: {exc}".rstrip(": ")
        if attempt < attempts:
            sleep(_BACKOFF_S[min(attempt - 1, len(_BACKOFF_S) - 1)])
    _log.error("alert not delivered to the webhook after %d attempt(s): %s", attempts, error)
    return Delivery(False, attempts, status, error)


def retrain_evidence(result: MonitorResult, report: str | None = None) -> str:
    """The audit event's reason: why retraining is recommended, as compact JSON."""
    words = [w["word"] for w in result.drift.classifier.words.get("current", [])[:10]]
    evidence = {
        "why": "input drift",
        "window": result.window.label(),
        "requests": result.current_requests,
        "reference": result.reference.label,
        "drift_share": None if result.drift.share is None else round(result.drift.share, 3),
        "drifted_features": result.drift.drifted,
        "classifier_auc": None if result.drift.classifier.auc is None else round(result.drift.classifier.auc, 3),
        "words_now_common": words,
        "quality_alerts": [t.describe() for t in result.quality.alerts],
        "report": report,
        "next": "cvml monitor export --window ... --out raw/from-prod.jsonl, then cvml curate and cvml finetune",
    }
    return json.dumps(evidence, separators=(",", ":"), ensure_ascii=False)


def recommend_retraining(result: MonitorResult, registry=None, report: str | None = None) -> int | None:
    """Record `retrain_recommended` for the monitored version; returns the event's id
    (None when the model is not registered: there is no version to attach it to)."""
    from cvml.registry import Registry

    if result.model is None or not result.model.registered:
        _log.warning("retraining recommended, but %s is not a registered version: no audit event",
                     result.model.ref if result.model else "the model")  # fmt: skip
        return None
    event = Registry(registry).record_event(result.model.ref, RETRAIN_ACTION, retrain_evidence(result, report),
                                            actor="cvml monitor")  # fmt: skip
    return event.id
