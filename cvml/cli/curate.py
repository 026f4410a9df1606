"""`cvml curate RECIPE` / `cvml curate --input raw.jsonl --out data/cv-v1`, and
`cvml curate forget --dataset D --group G`: options → spec → cvml.curate → rendered result."""

from __future__ import annotations

import re
from pathlib import Path

import typer
from typer.core import TyperGroup

from cvml.cli._output import emit_json, err, out
from cvml.cli._progress import progress_bars
from cvml.cli.forget import (
    DRY_RUN_HELP,
    MATCH_HELP,
    YES_HELP,
    confirm_or_exit,
    render_dataset_plan,
)


class _DefaultRun(TyperGroup):
    """`cvml curate X` means `cvml curate run X` unless X is a subcommand (forget)."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["run", *args]
        elif not args:
            args = ["run"]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=_DefaultRun,
    help="Raw CV pairs → a clean, private, leak-free dataset (and GDPR erasure). `cvml curate RECIPE` = `cvml curate run RECIPE`.",
)


@app.command("run")
def run(
    recipe: Path = typer.Argument(None, help="Recipe YAML with a curate section.", show_default=False),
    set_: list[str] = typer.Option(None, "--set", help="Override a field: --set curate.dedup.threshold=0.9"),
    input_: list[str] = typer.Option(None, "--input", help="Raw input file or `datasets` folder (repeatable); overrides curate.inputs."),
    out_dir: str = typer.Option(None, "--out", help="Dataset folder to write (overrides curate.output)."),
    engine: str = typer.Option(None, "--engine", help="local (this machine's cores) or ray (Ray Data); same dataset either way. Overrides curate.engine."),
    address: str = typer.Option(None, "--address", help="--engine ray: the cluster to join (auto, ray://head:10001); default a local Ray."),
    workers: int = typer.Option(None, "--workers", min=1, help="Worker processes (local) or Ray actors (ray); default: the cores."),
    json_: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout."),
) -> None:
    """Curate: schema, normalization, PII redaction, dedup, filters, decontamination, split."""
    from cvml.recipe import resolve_recipe

    if recipe is None and (not input_ or not out_dir):
        raise typer.BadParameter("give a recipe, or both --input and --out", param_hint="RECIPE")
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(out_dir or "").name).strip("-._") or "dataset"
    flags = {"curate.inputs": list(input_) if input_ else None, "curate.output": out_dir,
             "curate.engine": engine, "curate.address": address, "curate.workers": workers}
    resolved = resolve_recipe(recipe, set_, flags, require=("curate",) if recipe is not None else (), name=name)

    from cvml.curate.run import run_curate

    with progress_bars("curate", enabled=not json_) as on_progress:
        result = run_curate(resolved, on_progress=on_progress)
    if json_:
        emit_json(result.as_dict())
        return
    _render(result)


@app.command("forget")
def forget(
    dataset: Path = typer.Option(..., "--dataset", help="A dataset folder made by cvml curate."),
    group: list[str] = typer.Option(None, "--group", help="Group (person) id to erase (repeatable)."),
    match: str = typer.Option(None, "--match", help=MATCH_HELP),
    reason: str = typer.Option(None, "--reason", help="Why (recorded in the manifest's erasure event)."),
    yes: bool = typer.Option(False, "--yes", "-y", help=YES_HELP),
    dry_run: bool = typer.Option(False, "--dry-run", help=DRY_RUN_HELP),
    json_: bool = typer.Option(False, "--json", help="Print the plan or the result as JSON on stdout."),
) -> None:
    """Erase a person's rows from a curated dataset and record the erasure in its manifest
    (`cvml forget` also reaches runs, reports, the registry and the request log)."""
    from cvml.curate import forget as erase
    from cvml.curate import plan_forget
    from cvml.errors import DataError

    plan = plan_forget(dataset, groups=group or [], match=match)
    if not plan.total and plan.recovered is None:
        raise DataError("no row of the dataset matches", hint="Check the group id or value (matched exactly); nothing was changed.")
    if plan.total and (dry_run or not yes):
        if json_:
            emit_json(plan.as_dict())
        else:
            render_dataset_plan(plan)
        if dry_run:
            return
        confirm_or_exit(json_)
    result = erase(dataset, plan=plan, reason=reason)
    if json_:
        emit_json(result.as_dict())
        return
    total = sum(result.rows_removed.values())
    out.print(f"[green]✓[/] erased {total} row(s) and {result.ledger_entries_removed} ledger/index entr(ies) of "
              f"{len(result.groups)} group(s) from {result.dataset}: {result.rows_removed}")
    err.print("The next `cvml finetune` on this dataset trains without them; the manifest records the erasure, "
              "and later `cvml curate` runs keep them out.")


def _render(result) -> None:
    from rich.table import Table

    table = Table("outcome", "stage", "rows", title=f"curate → {result.output}")
    for kind in ("quarantined", "removed", "kept"):
        for stage, n in getattr(result, kind).items():
            table.add_row(kind, stage, f"{n:,}")
    table.add_row("[bold]input", "", f"[bold]{result.input_rows:,}")
    out.print(table)
    pii = ", ".join(f"{k} {v}" for k, v in sorted(result.pii.items())) or "none"
    out.print(f"PII redacted: {pii}", highlight=False)
    out.print(f"{result.duplicate_clusters} duplicate clusters · {result.records_per_s:,.0f} rows/s · books balance: "
              f"{'yes' if result.balanced else 'NO'}", highlight=False)
    err.print(f"See {result.output}/report.md, quarantine.jsonl, removed.jsonl, manifest.json")
