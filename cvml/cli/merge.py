"""`cvml merge ADAPTER_DIR --out DIR` — fold a LoRA adapter into its base model."""

from __future__ import annotations

from pathlib import Path

import typer

from cvml.cli._output import emit_json, err


def merge(
    adapter: Path = typer.Argument(..., help="A LoRA run's adapter/ folder."),
    out_dir: Path = typer.Option(..., "--out", help="Where to write the merged model."),
    json_: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Merge a LoRA adapter into its base: one plain model folder for serving or quantizing."""
    from cvml.train.merge import merge_adapter

    path = merge_adapter(adapter, out_dir)
    if json_:
        emit_json({"merged": str(path)})
    else:
        err.print(f"[green]✓[/] merged model written to {path}")
