"""`cvml forget`: one person's erasure everywhere cvml keeps a copy, in one command.

    cvml forget --match jane@example.com --dataset data/cv --runs runs/ --reports bench/ abtest/ \\
        --user-id U --reason "ticket 123"          # shows what it would erase, asks (or: --yes)

The dataset (rows, ledgers, PII index; the person stays out of later curations), run and
report folders (samples, pairs, reports), the registry (every version trained on their
data is marked "trained on erased data") and the request log of `cvml serve` (their
requests). Options → `cvml.curate.erasure.plan_erasure` → preview → confirm →
`erase` + `RequestLog.forget` → what was touched (`--json` for machines).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from cvml.cli._output import emit_json, err, out
from cvml.errors import DataError

MATCH_HELP = ("A value that identifies the person, matched exactly by type: an email, a phone number, a full name, "
              "or TYPE:value (name:, email:, phone:, url:, address:, dob:, national_id:). Never a substring.")
YES_HELP = "Erase without asking. Without it, cvml shows what it would erase and asks (or, not at a terminal, exits 1)."
DRY_RUN_HELP = "Only show what would be erased; change nothing."
_PREVIEW_ROWS = 12


def forget(
    folders: list[Path] = typer.Argument(
        None, help="More run or report folders to search, like --runs / --reports.", show_default=False
    ),
    match: str = typer.Option(None, "--match", help=MATCH_HELP),
    group: list[str] = typer.Option(None, "--group", help="The person's group id in the data (repeatable)."),
    dataset: Path = typer.Option(None, "--dataset", help="A curated dataset folder to erase them from."),
    runs: list[Path] = typer.Option(
        None, "--runs", help="A run folder, or a folder of runs, to search: samples.jsonl, quarantine.jsonl, result.json (repeatable)."
    ),
    reports: list[Path] = typer.Option(
        None, "--reports", help="Bench, abtest or quantize report folders to search (repeatable; more may follow as arguments)."
    ),
    user_id: str = typer.Option(None, "--user-id", help="Their user id as the web app sends it: their requests leave the request log."),
    db: str = typer.Option(
        None, "--db", help="Request log database (default: CVML_DB_URL, else $CVML_HOME/requests.db).", show_default=False
    ),
    registry: str = typer.Option(
        None, "--registry", help="Registry whose models get marked (default: CVML_DB_URL, else $CVML_HOME/registry.db).", show_default=False
    ),
    reason: str = typer.Option(None, "--reason", help="Why (a ticket, a request id); recorded with the erasure."),
    yes: bool = typer.Option(False, "--yes", "-y", help=YES_HELP),
    dry_run: bool = typer.Option(False, "--dry-run", help=DRY_RUN_HELP),
    json_: bool = typer.Option(False, "--json", help="Print the plan or the result as JSON on stdout."),
) -> None:
    """Erase one person everywhere: dataset, run and report folders, registered models (marked), request log."""
    from cvml.curate.erasure import erase, plan_erasure

    searched = [*(runs or []), *(reports or []), *(folders or [])]
    if not match and not group and not user_id:
        raise typer.BadParameter("give --match VALUE, --group ID or --user-id ID", param_hint="--match")
    if (dataset or searched) and not (match or group):
        raise typer.BadParameter("searching a dataset or folders needs --match or --group", param_hint="--match")
    plan = None
    if match or group:
        plan = plan_erasure(match=match, groups=group or [], dataset=dataset, folders=searched, registry=registry)
    if (plan is None or plan.empty) and not user_id:
        if plan is not None and plan.already_erased:
            if json_:
                emit_json({**plan.as_dict(), "files": [], "models": [], "request_log": None})
            else:
                out.print("Already erased: nothing of this person is left where you looked.")
            return
        raise DataError(
            "nothing matches: no dataset row, ledger entry or file entry holds this person",
            hint="Check the value (it is matched exactly: a whole email, phone or full name) and the folders; nothing was changed.",
        )
    preview = {**(plan.as_dict() if plan else {}), "request_log": {"user_id": "given"} if user_id else None}
    if dry_run or not yes:
        if json_:
            emit_json(preview)
        else:
            render_plan(plan, user_id)
        if dry_run:
            return
        confirm_or_exit(json_)
    result = erase(plan, reason=reason).as_dict() if plan is not None else {"files": [], "models": [], "dataset": None}
    log_result = None
    if user_id:
        from cvml.serve.requestlog import RequestLog

        with RequestLog(db) as log:
            log_result = {"deleted": log.forget(user_id), "db": str(log.path)}
    payload = {**result, "request_log": log_result}
    if json_:
        emit_json(payload)
    else:
        render_result(payload)


def confirm_or_exit(json_: bool = False) -> None:
    """Go on if a person at a terminal says yes; otherwise stop (exit 1), nothing changed."""
    if not json_ and sys.stdin.isatty():
        if typer.confirm("Erase all of the above? This cannot be undone", default=False, err=True):
            return
        err.print("Nothing was changed.")
        raise typer.Exit(1)
    err.print("[yellow]Hint:[/] nothing was changed. Check what is listed, then run the same command with --yes "
              "to erase it (--dry-run only shows it).", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


def render_dataset_plan(plan) -> None:
    """The rows, ledger entries and groups a dataset erasure would remove."""
    from rich.table import Table

    if plan.recovered is not None:
        out.print(f"Finished an erasure a crash had interrupted in {escape(plan.dataset)}.")
    rows = ", ".join(f"{split} {n}" for split, n in plan.rows.items())
    ledger = ", ".join(f"{name} {n}" for name, n in plan.ledger.items())
    out.print(f"[bold]{escape(plan.dataset)}[/] (matched by {plan.by}): groups {escape(', '.join(plan.groups)) or '—'}; "
              f"rows: {rows}; ledger entries: {ledger}; index entries: {plan.index_entries}", highlight=False, soft_wrap=True)
    if plan.records:
        table = Table("group", "where", "id", "source (as stored)")
        for record in plan.records[:_PREVIEW_ROWS]:
            text = " ".join((record.get("source_text") or "").split())
            table.add_row(escape(str(record["group"] or "")), record["split"], escape(record["id"]),
                          escape(text[:60] + ("…" if len(text) > 60 else "")))
        out.print(table)
        if len(plan.records) > _PREVIEW_ROWS:
            out.print(f"… and {len(plan.records) - _PREVIEW_ROWS} more row(s)")


def render_plan(plan, user_id: str | None) -> None:
    out.print("[bold]Would erase:[/]")
    if plan is not None:
        if plan.dataset is not None:
            render_dataset_plan(plan.dataset)
        for hit in plan.files:
            out.print(f"  {escape(hit.path)}: {hit.removed} entr{'y' if hit.removed == 1 else 'ies'}", highlight=False, soft_wrap=True)
        if plan.models:
            out.print(f"Models to mark as trained on erased data: {', '.join(plan.models)}", highlight=False, soft_wrap=True)
    if user_id:
        out.print("Request log: every request of the given user id", highlight=False, soft_wrap=True)


def render_result(payload: dict[str, Any]) -> None:
    dataset = payload.get("dataset")
    if dataset:
        rows = sum(dataset["rows_removed"].values())
        out.print(f"[green]✓[/] {escape(dataset['dataset'])}: {rows} row(s) and {dataset['ledger_entries_removed']} "
                  f"ledger/index entr(ies) of {len(dataset['groups'])} group(s) erased", highlight=False, soft_wrap=True)
    for hit in payload.get("files") or []:
        out.print(f"[green]✓[/] {escape(hit['path'])}: {hit['removed']} entr{'y' if hit['removed'] == 1 else 'ies'} removed",
                  highlight=False, soft_wrap=True)
    if payload.get("models"):
        out.print(f"[green]✓[/] marked as trained on erased data: {', '.join(payload['models'])}", highlight=False, soft_wrap=True)
    log = payload.get("request_log")
    if log:
        out.print(f"[green]✓[/] request log {escape(log['db'])}: {log['deleted']} request(s) deleted", highlight=False, soft_wrap=True)
    if not (dataset or payload.get("files") or payload.get("models") or log):
        out.print("Nothing left to erase.")
    if payload.get("erasure_id"):
        err.print(f"Erasure {payload['erasure_id']}: the person stays out of every later `cvml curate` (suppression list).")
