"""`cvml export openvino|gguf SOURCE` — options → ExportSpec → cvml.quantize.export → rendered result.

Exit codes: 0 done, 1 the perplexity guard failed (--max-ppl-increase; the folder and its
report are written, nothing is registered) or another error, 2 a usage error.
"""

from __future__ import annotations

from pathlib import Path

import typer

from cvml.cli._output import emit_json, out
from cvml.cli._progress import progress_bars

app = typer.Typer(help="Write a model for another runtime: OpenVINO GenAI, or GGUF for llama.cpp and Ollama.", no_args_is_help=True)


def _run(fmt: str, source: str, weights: str | None, group_size: int | None, recipe: Path | None, set_: list[str] | None,
         data: str | None, out_dir: Path | None, max_ppl_increase: float | None, overwrite: bool, json_: bool) -> None:
    from cvml.errors import RecipeError
    from cvml.quantize.export import export
    from cvml.recipe import ExportSpec, resolve_recipe

    stray = [o for o in set_ or [] if not o.startswith("export.")]
    if recipe is None and stray:
        raise RecipeError(
            f"--set {stray[0]} needs a recipe: without --recipe only export.* fields can be set",
            hint="Pass --recipe recipe.yaml, or set export.<field>.",
        )
    flags = {"export.format": fmt, "export.weights": weights, "export.group_size": group_size, "export.data": data,
             "export.max_ppl_increase": max_ppl_increase}
    resolved = resolve_recipe(recipe, set_, flags, name="export")
    spec = resolved.export or ExportSpec(format=fmt)
    with progress_bars("export", enabled=not json_) as on_progress:
        result = export(source, spec, recipe=resolved if recipe is not None else None, output=out_dir,
                        overwrite=overwrite, seed=resolved.seed, on_progress=on_progress)
    if json_:
        emit_json(result.as_dict())
    else:
        _render(result)
    if not result.passed:
        raise typer.Exit(1)


_SOURCE = typer.Argument(..., help="What to export: NAME, NAME@3, NAME@prod, a model folder, or a finetune run folder.")
_RECIPE = typer.Option(None, "--recipe", help="Recipe YAML; reads its export section (and data, name, seed).")
_SET = typer.Option(None, "--set", help="Override a recipe field: --set export.eval_samples=64 (repeatable).")
_DATA = typer.Option(None, "--data", help="Curated dataset folder or record file for calibration and evaluation.")
_OUT = typer.Option(None, "--out", help="Folder to write (default: export.output, runs/{name}-{format}-{weights}).")
_GUARD = typer.Option(None, "--max-ppl-increase", help="Exit 1 when perplexity rises by more than this fraction (0.05 = 5%).")
_OVERWRITE = typer.Option(False, "--overwrite", help="Replace an existing output folder (one holding a registered model is kept).")
_JSON = typer.Option(False, "--json", help="Print the result as JSON on stdout.")


@app.command("openvino")
def openvino(
    source: str = _SOURCE,
    weights: str = typer.Option(None, "--weights", help="int8 (per channel) or int4 (groups, calibrated on the curated data)."),
    group_size: int = typer.Option(None, "--group-size", help="int4: columns per scale (default: largest of 128/64/32 that fits)."),
    recipe: Path = _RECIPE, set_: list[str] = _SET, data: str = _DATA, out_dir: Path = _OUT,
    max_ppl_increase: float = _GUARD, overwrite: bool = _OVERWRITE, json_: bool = _JSON,
) -> None:
    """An OpenVINO GenAI folder (IR + tokenizer), served by `cvml serve --engine openvino`."""
    _run("openvino", source, weights, group_size, recipe, set_, data, out_dir, max_ppl_increase, overwrite, json_)


@app.command("gguf")
def gguf(
    source: str = _SOURCE,
    outtype: str = typer.Option(None, "--outtype", help="f16, q8_0 or q4_0."),
    recipe: Path = _RECIPE, set_: list[str] = _SET, data: str = _DATA, out_dir: Path = _OUT,
    max_ppl_increase: float = _GUARD, overwrite: bool = _OVERWRITE, json_: bool = _JSON,
) -> None:
    """One GGUF file with the chat template inside, for llama.cpp and Ollama."""
    _run("gguf", source, outtype, None, recipe, set_, data, out_dir, max_ppl_increase, overwrite, json_)


def _render(result) -> None:
    from rich.table import Table

    ppl, size, logits = result.perplexity, result.size, result.logits
    table = Table("", "source", "exported", "change", title=f"cvml export: {result.format} {result.weights}")
    table.add_row("perplexity", f"{ppl['source']['ppl']:.4f}", f"{ppl['exported']['ppl']:.4f}", f"{ppl['increase']:+.2%}")
    table.add_row("weights on disk", f"{size['source_weights_bytes'] / 2**20:.2f} MB", f"{size['exported_weights_bytes'] / 2**20:.2f} MB",
                  f"{size['ratio_vs_fp16']:.2f}× fp16")
    table.add_row("next-token agreement", "", f"{logits['top1_agreement']:.1%}", f"max |Δlogit| {logits['max_abs_diff']:.3g}")
    out.print(table)
    out.print(f"Read back by: {result.runtime['runtime']}")
    gate = result.gate
    if gate["max_ppl_increase"] is not None:
        verdict = "[green]PASS[/]" if gate["passed"] else "[bold red]FAIL[/]"
        out.print(f"Perplexity guard (≤ {gate['max_ppl_increase']:.1%}): {verdict}")
    out.print(f"Written to {result.output_dir}")
    if result.registered:
        out.print(f"Registered as [bold]{result.registered}[/]")
    elif result.not_registered_because:
        out.print(f"Not registered: {result.not_registered_because}")
