"""Production back into training: a window's logged rewrites as raw rows `cvml curate` reads.

    result = export_rows(log_location, window, "raw/from-prod.jsonl", include="accepted")

Each row is a record (id, task, source_text, job_description, target, group, meta). The
target is what the user kept: their edit of the output when the web app sent one
(`/v1/feedback` edited_text), else — with `include="accepted"` (the default) or "all" —
the output itself when they accepted it (or, with "all", whatever the model wrote). The
group is the hashed user id, so `cvml curate` never splits one user across train and test.

Only what the log holds is exported: redacted text (placeholders such as `<EMAIL_1>` stay
placeholders), never a user id. Outputs the guard blocked or the checks flagged are left
out unless the user edited them. The file is personal data all the same: it is written
0600, with a manifest beside it (`<name>.manifest.json`) that says what made it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cvml.errors import MonitorError
from cvml.manifest import build_manifest
from cvml.monitor.logrows import Request, log_display, open_log, read_window
from cvml.windows import Window

INCLUDE = ("edited", "accepted", "all")


@dataclass
class ExportResult:
    path: str
    manifest: str
    rows: int
    window: Window
    counts: dict[str, int] = field(default_factory=dict)  # why requests were left out, and targets by origin

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "manifest": self.manifest, "rows": self.rows, "window": self.window.to_dict(),
                "counts": self.counts}  # fmt: skip


def export_rows(
    log: str | Path | None,
    window: Window,
    out: str | Path,
    *,
    endpoint: str = "/v1/cv/rewrite",
    include: str = "accepted",
    overwrite: bool = False,
) -> ExportResult:
    """Write the window's usable requests as raw records (JSONL, 0600) and their manifest.

    Raises:
        MonitorError: `include` unknown, `out` exists (without `overwrite`), an empty window,
            or a log that keeps no text (serve.log_text: none): nothing to learn from.
    """
    if include not in INCLUDE:
        raise MonitorError(f"unknown --include {include!r}", hint=f"use one of: {', '.join(INCLUDE)}")
    path = Path(out)
    if path.exists() and not overwrite:
        raise MonitorError(f"{path} exists", hint="choose another --out, or pass --overwrite")
    requests = read_window(open_log(log), window, endpoint)
    if not requests:
        raise MonitorError(f"no request to {endpoint} in the window {window.label()}", hint="widen --window")
    counts = {"requests": len(requests), "no_text": 0, "failed": 0, "unsplit": 0, "flagged": 0, "not_accepted": 0,
              "target_user_edit": 0, "target_accepted_output": 0, "target_output": 0}  # fmt: skip
    rows = []
    for request in requests:
        row = _record(request, include, counts)
        if row is not None:
            rows.append(row)
    if counts["no_text"] == len(requests):
        raise MonitorError(
            f"the log keeps no text of the {len(requests)} request(s) in the window (serve.log_text: none)",
            hint="export needs serve.log_text: redacted (the default)",
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_private(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    manifest = build_manifest(
        "monitor-export",
        extra={"log": log_display(log), "endpoint": endpoint, "window": window.to_dict(), "include": include,
               "rows": len(rows), "counts": counts, "file": path.name},  # fmt: skip
    )
    manifest_path = path.with_name(f"{path.stem}.manifest.json")
    manifest_path.write_text(json.dumps(manifest, indent=2, default=str) + "\n", encoding="utf-8")
    return ExportResult(str(path), str(manifest_path), len(rows), window, counts)


def _record(r: Request, include: str, counts: dict[str, int]) -> dict[str, Any] | None:
    if not r.has_text:
        counts["no_text"] += 1
        return None
    if not r.ok or r.output is None or r.task is None:
        counts["failed"] += 1
        return None
    if r.source is None:
        counts["unsplit"] += 1
        return None
    if r.edited_text:
        target, origin = r.edited_text, "user_edit"
    elif r.blocked or r.final_flagged:
        counts["flagged"] += 1
        return None
    elif r.accepted and include in ("accepted", "all"):
        target, origin = r.output, "accepted_output"
    elif include == "all" and r.output.strip():
        target, origin = r.output, "output"
    else:
        counts["not_accepted"] += 1
        return None
    counts[f"target_{origin}"] += 1
    return {
        "id": f"prod-{r.request_id}",
        "task": r.task,
        "source_text": r.source,
        "job_description": r.job_description,
        "target": target,
        "group": f"user-{r.user_key[:16]}" if r.user_key else f"request-{r.request_id}",
        "meta": {"origin": "production", "request_id": r.request_id, "at": r.at, "model_version": r.model_version,
                 "variant": r.variant, "target_from": origin, "accepted": r.accepted, "rating": r.rating},  # fmt: skip
    }


def _write_private(path: Path, text: str) -> None:
    """Write `text` to a new 0600 file beside `path`, then move it into place."""
    staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    staging.unlink(missing_ok=True)
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(staging, path)
    except BaseException:
        staging.unlink(missing_ok=True)
        raise
