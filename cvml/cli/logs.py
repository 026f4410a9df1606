"""`cvml logs ...` — read the request log of `cvml serve`, enforce retention, erase a user,
rotate the user-id key."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from cvml.cli._output import emit_json, out
from cvml.errors import ConfigError

app = typer.Typer(
    help="The request log of cvml serve: recent requests, statistics, retention (purge), erasure (forget), keys.",
    no_args_is_help=True,
)

_DB = typer.Option(
    None, "--db", help="Request log database: a file, its folder, or a postgresql:// URL (default: CVML_DB_URL, else $CVML_HOME/requests.db).", show_default=False
)
_JSON = typer.Option(False, "--json", help="Print the result as JSON on stdout.")
_EXPERIMENT = typer.Option(None, "--experiment", help="Only this experiment's requests.", show_default=False)
_DURATION_RE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


@app.command()
def show(
    limit: int = typer.Option(20, "--limit", min=1, help="How many of the most recent requests."),
    experiment: str = _EXPERIMENT,
    db: str = _DB,
    json_: bool = _JSON,
) -> None:
    """Show the most recent requests: time, variant, model, status, latency, tokens, feedback."""
    rows = _open(db).query(experiment=experiment, limit=limit, newest_first=True)
    if json_:
        emit_json(rows)
        return
    if not rows:
        out.print("No requests logged yet.")
        return
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
    for column in ("time (UTC)", "request", "variant", "model", "status", "e2e ms", "tokens", "feedback"):
        table.add_column(column, no_wrap=True, justify="right" if column in ("e2e ms", "tokens") else "left")
    for row in rows:
        table.add_row(
            row["at"][5:19].replace("T", " "),
            row["request_id"][:8],
            escape(_variant(row)),
            escape(row["model_version"] or row["model_ref"] or ""),
            _status(row["status"]),
            "" if row["e2e_s"] is None else f"{row['e2e_s'] * 1000:.0f}",
            f"{_count(row['prompt_tokens'])}→{_count(row['completion_tokens'])}",
            _feedback(row),
        )
    out.print(table)


@app.command()
def stats(
    experiment: str = _EXPERIMENT,
    db: str = _DB,
    json_: bool = _JSON,
) -> None:
    """Per-variant counts, errors, users, acceptance, ratings and latency percentiles."""
    result = _open(db).stats(experiment=experiment)
    if json_:
        emit_json(result)
        return
    out.print(
        f"{result['requests']} request(s), {result['users']} user(s), {result['with_feedback']} with feedback, "
        f"{result['with_text']} with text"
        + (f"; {_minute(result['first_at'])} → {_minute(result['last_at'])} UTC" if result["requests"] else "")
    )
    last = result.get("last_purge")
    out.print(
        "No retention purge recorded yet." if last is None else
        f"Last purge: {_minute(last['at'])} UTC, older than {_age(last['older_than_s'])}, {last['deleted']} deleted"
    )  # fmt: skip
    if not result["variants"]:
        return
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
    for column in ("variant", "models", "reqs", "errors", "users", "accepted", "rating", "e2e p50/p95",
                   "ttft p50"):  # fmt: skip
        table.add_column(column, no_wrap=column != "models")
    for v in result["variants"]:
        table.add_row(
            escape(_variant(v)),
            escape(", ".join(v["models"])),
            str(v["requests"]),
            str(v["errors"]),
            str(v["users"]),
            "" if v["acceptance_rate"] is None else f"{v['acceptance_rate']:.0%} ({v['feedback']})",
            "" if v["mean_rating"] is None else f"{v['mean_rating']:.2f} ({v['ratings']})",
            "" if v["e2e_p50_s"] is None else f"{_ms(v['e2e_p50_s'])}/{_ms(v['e2e_p95_s'])} ms",
            "" if v["ttft_p50_s"] is None else f"{_ms(v['ttft_p50_s'])} ms",
        )
    out.print(table)


@app.command()
def purge(
    older_than: str = typer.Option(..., "--older-than", help="Delete requests older than this: 30d, 12h, 90m."),
    db: str = _DB,
    json_: bool = _JSON,
) -> None:
    """Delete the requests logged longer ago than the retention period."""
    period = parse_duration(older_than)
    log = _open(db)
    deleted = log.purge(period)
    if json_:
        emit_json({"deleted": deleted, "older_than_s": period.total_seconds(), "db": str(log.path)})
    else:
        out.print(f"Deleted {deleted} request(s) older than {older_than} from {escape(str(log.path))}")


@app.command()
def forget(
    user_id: str = typer.Option(..., "--user-id", help="The user whose requests are erased."),
    db: str = _DB,
    json_: bool = _JSON,
) -> None:
    """Erase every logged request of one user (the log holds only a keyed hash of the id)."""
    log = _open(db)
    deleted = log.forget(user_id)
    if json_:
        emit_json({"deleted": deleted, "db": str(log.path)})
    else:
        out.print(f"Deleted {deleted} request(s) of that user from {escape(str(log.path))}")


@app.command("rotate-key")
def rotate_key(
    drop_old: bool = typer.Option(
        False, "--drop-old", help="Instead: delete the old keys that no logged request uses any more (after retention)."
    ),
    db: str = _DB,
    json_: bool = _JSON,
) -> None:
    """Hash new requests' user ids with a new key; older keys stay usable by forget until dropped.

    A keyed hash cannot be recomputed under a new key, so rows keep the key that hashed
    them. Once retention has purged them, `--drop-old` deletes that key. With CVML_LOG_KEY
    (a Postgres log's replicas share it) rotate there: CVML_LOG_KEY=NEW,OLD on every replica.
    A running `cvml serve` keeps its key until it restarts.
    """
    log = _open(db)
    result = log.drop_old_keys() if drop_old else log.rotate_key()
    if json_:
        emit_json(result)
        return
    if not drop_old:
        out.print(f"New requests are hashed with key {result['key_id']}; {len(result['keys']) - 1} older key(s) kept "
                  "for forget (restart cvml serve to use the new key)")  # fmt: skip
        return
    out.print(f"Dropped {len(result['dropped'])} old key(s)" + (f": {', '.join(result['dropped'])}" if result["dropped"] else ""))
    for key_id, rows in result["kept"].items():
        out.print(f"Kept {key_id}: {rows} logged request(s) still use it (purge them first)")
    for key_id in result.get("unused", []):
        out.print(f"{key_id} is used by no request: it may be removed from CVML_LOG_KEY")


def parse_duration(text: str) -> timedelta:
    """`30d`, `12h`, `90m`, `45s`, `2w` (or decimals such as `1.5h`) as a positive timedelta.

    Raises:
        ConfigError: not a number followed by one of s, m, h, d, w, or not positive.
    """
    match = _DURATION_RE.fullmatch(text)
    if not match:
        raise ConfigError(
            f"invalid duration {text!r}",
            hint="give a number and a unit: s, m, h, d or w (e.g. 30d, 12h, 90m)",
        )
    period = timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})
    if period <= timedelta(0):
        raise ConfigError(f"the duration {text!r} is not positive", hint="e.g. --older-than 30d")
    return period


def _open(db: str | None):
    """The existing request log at `db` (or the default); reading never creates one."""
    from cvml.serve.requestlog import RequestLog, RequestLogError, log_url

    url = log_url(db)
    if url.backend == "sqlite" and not Path(url.sqlite_path).is_file():
        raise RequestLogError(
            f"no request log at {url.display}",
            hint="cvml serve writes it as it answers requests; pass --db to read another one",
        )
    return RequestLog(db)


def _minute(at: str) -> str:
    return at[:16].replace("T", " ")


def _variant(row: dict[str, Any]) -> str:
    if row["experiment"] and row["variant"]:
        return f"{row['experiment']}/{row['variant']}"
    return row["variant"] or ""


def _status(status: int) -> str:
    return f"[red]{status}[/]" if status >= 400 else str(status)


def _count(value: int | None) -> str:
    return "?" if value is None else str(value)


def _feedback(row: dict[str, Any]) -> str:
    parts = []
    if row["accepted"] is not None:
        parts.append("[green]✓[/]" if row["accepted"] else "[red]✗[/]")
    if row["rating"] is not None:
        parts.append(f"★ {row['rating']:g}")
    return " ".join(parts)


def _age(seconds: float) -> str:
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size:g}{unit}"
    return f"{seconds:g}s"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f}"
