"""The `cvml` entry point: registers the thin subcommands and renders errors in one place.

No torch/transformers import may happen at import time of anything under `cvml.cli`:
`cvml --help` must stay fast (tests/test_cli_import.py checks it in a subprocess).
"""

from __future__ import annotations

import os

import typer
from typer.core import TyperGroup

from cvml import __version__
from cvml.cli import abtest, bench, curate, db, export, finetune, forget, logs, merge, models, monitor, quantize, serve, tiny, validate
from cvml.errors import CvmlError, RecipeError


def render_error(exc: CvmlError) -> None:
    """Print a CvmlError as message (+ every recipe problem) + hint, on stderr."""
    from cvml.cli._output import err

    err.print(f"[bold red]Error:[/] {exc.message}", highlight=False, soft_wrap=True)
    if isinstance(exc, RecipeError):
        for path, msg in exc.problems:
            err.print(f"  • [bold]{path}[/]: {msg}", highlight=False, soft_wrap=True)
    if exc.hint:
        err.print(f"[yellow]Hint:[/] {exc.hint}", highlight=False, soft_wrap=True)


class _CvmlGroup(TyperGroup):
    """Root group: every CvmlError raised below it becomes message + hint + exit code."""

    def invoke(self, ctx):  # noqa: D102 - click API
        from cvml._quiet import quiet_import_noise
        from cvml.cli._output import results_only_on_stdout

        quiet_import_noise()
        try:
            with results_only_on_stdout():
                return super().invoke(ctx)
        except CvmlError as exc:
            if os.environ.get("CVML_DEBUG") == "1":
                raise
            render_error(exc)
            ctx.exit(exc.exit_code)


app = typer.Typer(
    name="cvml",
    cls=_CvmlGroup,
    help="Curate, fine-tune, quantize, bench, serve, A/B-test and monitor the models behind a CV product.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"cvml {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """cvml — the lifecycle of CV-rewriting language models, from data to A/B test."""


app.command("validate")(validate.validate)
app.add_typer(curate.app, name="curate")
app.command("finetune")(finetune.finetune)
app.command("bench")(bench.bench)
app.command("merge")(merge.merge)
app.command("quantize")(quantize.quantize)
app.add_typer(export.app, name="export")
app.add_typer(models.app, name="models")
app.add_typer(logs.app, name="logs")
app.command("serve")(serve.serve)
app.add_typer(tiny.app, name="tiny")
app.add_typer(abtest.app, name="abtest")
app.add_typer(monitor.app, name="monitor")
app.add_typer(db.app, name="db")
app.command("forget")(forget.forget)


def main() -> None:
    """Console-script entry point."""
    app()
