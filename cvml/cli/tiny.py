"""`cvml tiny model|data` — build the embedded default: a small base model and synthetic CV data."""

from __future__ import annotations

from pathlib import Path

import typer

from cvml.cli._output import emit_json, err, out

app = typer.Typer(help="Build the embedded default (tiny base model, synthetic CV data) — no hub needed.", no_args_is_help=True)


@app.command("model")
def model(
    out_dir: Path = typer.Option(Path("artifacts/tiny/base"), "--out", help="Folder for the base model."),
    seed: int = typer.Option(0, "--seed", help="Seed for corpus, initialisation and data order."),
    register: bool = typer.Option(True, "--register/--no-register", help="Register it as cvml-tiny-base."),
    json_: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Train a byte-level BPE tokenizer and pre-train a small Llama on CV-domain text."""
    from rich.progress import Progress

    from cvml.tiny.model import build_base_model

    with Progress(console=err, disable=json_) as bar:
        task = bar.add_task("pre-training tiny base", total=None)

        def on_step(step: int, total: int, loss: float) -> None:
            bar.update(task, completed=step, total=total, description=f"pre-training tiny base · loss {loss:.3f}")

        summary = build_base_model(out_dir, seed=seed, on_step=on_step)
    if register:
        from cvml.registry import Registry

        version = Registry().register(out_dir, name="cvml-tiny-base", kind="base", metadata={"summary": summary}, reason="cvml tiny model")
        summary["registered"] = version.ref
    if json_:
        emit_json(summary)
        return
    out.print(
        f"[green]✓[/] tiny base model: {summary['parameters']:,} parameters, vocab {summary['vocab_size']}, "
        f"pre-train loss {summary['pretrain_loss_first']:.2f} → {summary['pretrain_loss_last']:.2f} "
        f"in {summary['seconds']} s → {summary['path']}",
        highlight=False,
    )


@app.command("data")
def data(
    out_dir: Path = typer.Option(Path("artifacts/tiny/data"), "--out", help="Folder for cv-raw.jsonl."),
    people: int = typer.Option(400, "--people", min=1, help="Synthetic people (each yields several rows)."),
    seed: int = typer.Option(0, "--seed", help="Seed: same seed, same rows."),
    json_: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Generate synthetic CV training pairs, with planted PII, duplicates and malformed rows."""
    from cvml.tiny.synth import write_synthetic_dataset

    summary = write_synthetic_dataset(out_dir, n_people=people, seed=seed)
    if json_:
        emit_json(summary)
        return
    planted = ", ".join(f"{k} {v}" for k, v in sorted(summary["planted"].items()))
    out.print(f"[green]✓[/] {summary['rows']:,} rows for {summary['people']} people → {summary['path']}", highlight=False)
    out.print(f"  by task: {summary['by_task']}\n  planted: {planted}", highlight=False)
