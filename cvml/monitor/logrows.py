"""A window of serve's request log, read through the storage layer (SQLite or Postgres, the
same SQL), as one `Request` per row with what the monitor derives from it.

    rows = read_window(log_location, window, endpoint="/v1/cv/rewrite")

The log keeps the rewrite's inputs as one redacted text, `text + "\\n" + job_description`;
the sizes serve logs with the checks (`cvml.serve.checks.input_figures`) say where the text
ends, so `split_input` gives each back. Rows logged before serve kept those sizes keep
their inputs whole when there is no line break (no job description is possible), and are
not split otherwise (counted in `Request.unsplit`).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timezone
from pathlib import Path
from typing import Any

from cvml.errors import MonitorError
from cvml.serve.checks import INPUTS
from cvml.serve.requestlog import REQUEST_LOG, log_url
from cvml.storage import Database, StorageUrl
from cvml.windows import Window

_COLUMNS = (
    "request_id", "at", "variant", "model_version", "user_key", "task", "status", "finish_reason", "e2e_s",
    "ttft_s", "pii_leak", "fabrication", "checks", "input_text", "output_text", "accepted", "rating", "edited_text",
)  # fmt: skip
_HARMS = ("protected_attributes", "abusive")
# Openings of a refusal rather than a rewrite; matched at the start of the output.
_REFUSAL = re.compile(
    r"^\s*(?:i(?:'m| am)? (?:sorry|unable|not able)|i can(?:no|')t|i (?:will|won)'?t|as an ai\b|sorry,|"
    r"i cannot|unfortunately,? i)",
    re.IGNORECASE,
)


@dataclass(slots=True)
class Request:
    """One logged request and the figures the monitor reads from it (None: not known)."""

    request_id: str
    at: str
    variant: str
    model_version: str | None
    user_key: str | None
    task: str | None
    status: int
    e2e_s: float | None
    ttft_s: float | None
    source: str | None  # redacted CV text
    job_description: str | None  # redacted, None when the request had none (or it is unknown)
    output: str | None  # redacted model output (None: failed, or the log keeps no text)
    source_chars: int | None
    job_description_chars: int | None
    error: bool
    timeout: bool
    checked: bool  # the safety checks ran (a successful rewrite)
    fabrication: bool | None  # on any attempt: the model's own rate, before the guard resampled
    pii_leak: bool | None
    harmful: bool | None
    blocked: bool | None
    final_flagged: bool | None  # the output that went out failed a check (guard "flag", or blocked)
    accepted: bool | None
    rating: float | None
    edited_text: str | None
    has_text: bool
    unsplit: bool = False  # inputs logged whole, without the sizes that split them

    @property
    def group(self) -> str:
        """Whose request it is (the hashed user id, else the request alone): rows of one person
        are alike, so samples and splits keep them together."""
        return self.user_key or self.request_id

    @property
    def ok(self) -> bool:
        return self.status < 400

    @property
    def input_text(self) -> str:
        return self.source if self.job_description is None else f"{self.source}\n{self.job_description}"

    @property
    def empty_refusal(self) -> bool | None:
        if not self.ok or self.output is None:
            return None
        return not self.output.strip() or bool(_REFUSAL.match(self.output))


def open_log(location: str | Path | None) -> Database:
    """The request log at `location` (file, folder, URL; None: CVML_DB_URL, else $CVML_HOME/requests.db).

    Raises:
        MonitorError: a SQLite log that does not exist (nothing was served with it).
    """
    url = log_url(location)
    if url.backend == "sqlite" and not Path(url.sqlite_path).is_file():
        raise MonitorError(
            f"no request log at {url.display}",
            hint="`cvml serve` writes it; pass --db (or set CVML_DB_URL) to read another",
        )
    return Database.open(url, REQUEST_LOG)


def log_display(location: str | Path | None) -> str:
    url: StorageUrl = log_url(location)
    return url.display


def read_window(
    db: Database, window: Window, endpoint: str, models: Sequence[str] | None = None
) -> list[Request]:
    """The window's requests to `endpoint`, in time order (optionally only those `models` served).

    Raises:
        StorageError (as the log's error): the database cannot be read.
    """
    sql = f"SELECT {', '.join(_COLUMNS)} FROM requests WHERE at >= ? AND at < ? AND endpoint = ?"
    params: list[Any] = [stored_time(window.start), stored_time(window.end), endpoint]
    if models:
        sql += f" AND model_version IN ({', '.join('?' * len(models))})"
        params += list(models)
    sql += " ORDER BY at, request_id"
    with db.read() as tx:
        raw = tx.tuples(sql, params)
    return [_request(*row) for row in raw]


def served_models(db: Database, window: Window, endpoint: str) -> Counter[str]:
    """How many of the window's requests each model version served."""
    sql = (
        "SELECT model_version, COUNT(*) FROM requests WHERE at >= ? AND at < ? AND endpoint = ? "
        "GROUP BY model_version"
    )
    with db.read() as tx:
        rows = tx.execute(sql, [stored_time(window.start), stored_time(window.end), endpoint]).fetchall()
    return Counter({row[0]: int(row[1]) for row in rows if row[0] is not None})


def stored_time(moment) -> str:
    """A time in the log's stored format (UTC, microseconds), so text order is time order."""
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds")


def split_input(text: str | None, figures: dict[str, Any] | None) -> tuple[str | None, str | None, bool]:
    """(source, job_description, split): the logged `text + "\\n" + job_description` apart.

    With the logged sizes the text ends after `text_lines` line breaks; without them an
    input with no line break is the text alone, and one with line breaks is not split.
    """
    if text is None:
        return None, None, True
    if figures and isinstance(figures.get("text_lines"), int):
        if not figures.get("job_description_chars"):
            return text, None, True
        lines = figures["text_lines"]
        parts = text.split("\n", lines + 1)
        if len(parts) <= lines + 1:  # redaction took a line break (a multi-line address): keep it whole
            return None, None, False
        return "\n".join(parts[: lines + 1]), parts[lines + 1], True
    if "\n" not in text:
        return text, None, True
    return None, None, False


def _request(
    request_id, at, variant, model_version, user_key, task, status, finish_reason, e2e_s, ttft_s, pii_leak,
    fabrication, checks, input_text, output_text, accepted, rating, edited_text,
) -> Request:  # fmt: skip
    """One row (the values of _COLUMNS, in order) as the monitor reads it."""
    checks = json.loads(checks) if checks else None
    status = int(status)
    checked = isinstance(checks, dict) and "fabrication" in checks
    figures = checks.get(INPUTS) if checked else None
    if not isinstance(figures, dict):
        figures = None
    source, job, split = split_input(input_text, figures)
    if source is not None:
        source_chars, job_chars = len(source), (len(job) if job is not None else None)
    elif figures is not None:  # no text kept (log_text none): the raw sizes
        source_chars, job_chars = figures.get("text_chars"), figures.get("job_description_chars") or None
    else:
        source_chars = job_chars = None
    fabricated = leaked = harmful = blocked = final_flagged = None
    if checked:
        guard = checks.get("guard") or {}
        reasons = guard.get("reasons") or ()
        harms = [bool((checks.get(name) or {}).get("flagged")) for name in _HARMS]
        fabricated = "fabrication" in reasons or bool(fabrication)
        leaked = "pii_leak" in reasons or bool(pii_leak)
        harmful = any(name in reasons for name in _HARMS) or any(harms)
        blocked = guard.get("action") == "blocked"
        final_flagged = bool(fabrication) or bool(pii_leak) or any(harms)
    return Request(
        request_id=request_id,
        at=at,
        variant=variant or "-",
        model_version=model_version,
        user_key=user_key,
        task=task,
        status=status,
        e2e_s=e2e_s,
        ttft_s=ttft_s,
        source=source,
        job_description=job,
        output=output_text if status < 400 else None,
        source_chars=source_chars,
        job_description_chars=job_chars,
        error=status >= 500 or status == 429,
        timeout=status == 504 or finish_reason == "deadline",
        checked=checked,
        fabrication=fabricated,
        pii_leak=leaked,
        harmful=harmful,
        blocked=blocked,
        final_flagged=final_flagged,
        accepted=None if accepted is None else bool(accepted),
        rating=rating,
        edited_text=edited_text,
        has_text=input_text is not None,
        unsplit=not split,
    )
