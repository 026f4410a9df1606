"""What the current window is compared with: the model's own training data, or a past
window of the request log.

- `training`: the curated train split the model's manifest names (see
  `cvml.monitor.model`); its targets stand in for outputs (output features only). It has
  no quality figures: quality is then judged against `monitor.rate_limits` alone.
- `previous`: the log's window of the same length just before the current one.
- `START..END`: any past window of the log (e.g. the month after the last release).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cvml.data.records import load_records
from cvml.errors import MonitorError
from cvml.monitor.logrows import Request, read_window
from cvml.monitor.model import MonitoredModel
from cvml.storage import Database
from cvml.windows import Window


@dataclass
class Reference:
    kind: str  # "training" or "log"
    label: str
    rows: list[Request]
    window: Window | None = None  # a log reference's window
    source: str | None = None  # a training reference's file name

    def to_dict(self) -> dict:
        return {
            "kind": self.kind, "label": self.label, "requests": len(self.rows),
            "window": self.window.to_dict() if self.window else None, "source": self.source,
        }  # fmt: skip


def training_reference(model: MonitoredModel | None) -> Reference:
    """The model's curated train split as reference rows.

    Raises:
        MonitorError: no model known, or it has no training data to read (the note says why).
    """
    if model is None:
        raise MonitorError(
            "a training reference needs the model whose training data it is",
            hint="pass --model NAME@ALIAS, or compare with a past window: --reference previous or START..END",
        )
    if model.training_data is None:
        raise MonitorError(
            f"{model.ref} has no stored reference: {model.notes.get('training_data', 'no training data')}",
            hint="compare with a past window of the log instead: --reference previous or START..END",
        )
    records, _ = load_records(model.training_data)
    rows = [training_row(r) for r in records]
    label = f"training data of {model.ref} ({Path(model.training_data).name})"
    return Reference("training", label, rows, source=Path(model.training_data).name)


def training_row(record) -> Request:
    """A curated record as the monitor reads a request: its target stands for the output."""
    job = record.job_description
    return Request(
        request_id=record.id, at="", variant="-", model_version=None, user_key=record.group, task=record.task, status=200,
        e2e_s=None, ttft_s=None, source=record.source_text, job_description=job, output=record.target,
        source_chars=len(record.source_text), job_description_chars=len(job) if job else None, error=False,
        timeout=False, checked=False, fabrication=None, pii_leak=None, harmful=None, blocked=None, final_flagged=None, accepted=None,
        rating=None, edited_text=None, has_text=True,
    )  # fmt: skip


def log_reference(db: Database, window: Window, endpoint: str, models: tuple[str, ...] | None) -> Reference:
    """A past window of the log (`previous`, or START..END), with the current window's endpoint
    (and model) filter."""
    rows = read_window(db, window, endpoint, models)
    return Reference("log", f"log window {window.label()}", rows, window=window)
