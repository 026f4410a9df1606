"""`cvml db upgrade | status | copy` — create, inspect and move cvml's databases."""

from __future__ import annotations

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from cvml.cli._output import emit_json, err, out

app = typer.Typer(
    help="cvml's databases (registry, experiments, request log): SQLite files by default, Postgres with CVML_DB_URL.",
    no_args_is_help=True,
)
_URL = typer.Option(
    None, "--url", envvar="CVML_DB_URL",
    help="postgresql://… URL, a SQLite file or a folder (default: CVML_DB_URL, else $CVML_HOME's files).",
    show_default=False, show_envvar=False,
)
_JSON = typer.Option(False, "--json", help="Print the result as JSON on stdout.")


def _targets():
    from cvml.registry.db import REGISTRY
    from cvml.registry.store import default_registry_path
    from cvml.serve.requestlog import REQUEST_LOG, default_log_path

    return [(REGISTRY, default_registry_path()), (REQUEST_LOG, default_log_path())]


@app.command()
def upgrade(url: str = _URL, json_: bool = _JSON) -> None:
    """Create the cvml schema or migrate it to this version; safe to run again."""
    from cvml.storage.admin import upgrade as run

    report = run(url, _targets())
    if json_:
        emit_json(report)
        return
    for name, item in report["schemas"].items():
        done = f"applied migration(s) {', '.join(map(str, item['applied']))}" if item["applied"] else "already up to date"
        out.print(f"[green]✓[/] {name}: version {item['version']} ({done}) — {escape(item['database'])}")


@app.command()
def status(url: str = _URL, json_: bool = _JSON) -> None:
    """Where each schema lives (password hidden), its version, pending migrations, row counts.

    Exit code 1 when a Postgres schema needs `cvml db upgrade` (SQLite files migrate on first use).
    """
    from cvml.storage.admin import status as run

    report = run(url, _targets())
    pending = any(item["pending"] and item.get("backend") == "postgresql" for item in report["schemas"].values())
    if json_:
        emit_json(report)
    else:
        table = Table(box=box.SIMPLE_HEAD, show_edge=False)
        for column in ("schema", "database", "version", "pending", "rows"):
            table.add_column(column, overflow="fold")
        for name, item in report["schemas"].items():
            rows = ", ".join(f"{t} {n:,}" for t, n in item["tables"].items()) or "—"
            waiting = ", ".join(map(str, item["pending"])) or "none"
            if item["pending"] and item.get("backend", "sqlite") == "sqlite":
                waiting += " (applied on first use)" if item["exists"] else " (created on first use)"
            table.add_row(name, escape(item["database"]), f"{item['version']} / {item['code_version']}", waiting, rows)
        out.print(table)
        if pending:
            err.print("[yellow]Hint:[/] run `cvml db upgrade` to apply the pending migrations.")
    if pending:
        raise typer.Exit(1)


@app.command()
def copy(
    source: str = typer.Option(..., "--from", help="The database to read: a SQLite file or folder, or a URL."),
    destination: str = typer.Option(..., "--to", help="The database to fill (migrated first; must be empty)."),
    json_: bool = _JSON,
) -> None:
    """Copy a registry / request log into another database, e.g. SQLite into Postgres."""
    from cvml.storage.admin import copy as run

    report = run(source, destination, _targets())
    if json_:
        emit_json(report)
        return
    for name, item in report["schemas"].items():
        rows = ", ".join(f"{t} {n:,}" for t, n in item["rows"].items())
        out.print(f"[green]✓[/] {name}: {escape(item['from'])} → {escape(item['to'])} ({rows})")
