"""`cvml quantize SOURCE` — options → QuantizeSpec → cvml.quantize.quantize → rendered result.

Exit codes: 0 done, 1 the perplexity guard failed (--max-ppl-increase; the folder and its
report are written, nothing is registered) or another error, 2 a usage error.
"""

from __future__ import annotations

from pathlib import Path

import typer

from cvml.cli._output import emit_json, err, out
from cvml.cli._progress import progress_bars

# Flag → recipe field; explicit flags win over --set, which wins over the YAML.
_FLAGS = ("method", "bits", "group_size", "data", "device", "max_ppl_increase")


def quantize(
    source: str = typer.Argument(..., help="What to quantize: NAME, NAME@3, NAME@prod, a model folder, or a finetune run folder."),
    method: str = typer.Option(None, "--method", help="gptq, rtn (GPTQ's round-to-nearest baseline) or int8 (CPU serving)."),
    bits: int = typer.Option(None, "--bits", help="Weight bits: gptq/rtn 2, 3, 4 or 8; int8 8."),
    group_size: int = typer.Option(None, "--group-size", help="gptq/rtn: columns per scale (-1 = per channel); must divide every layer's input size."),
    recipe: Path = typer.Option(None, "--recipe", help="Recipe YAML; reads its quantize section (and data, name, seed)."),
    set_: list[str] = typer.Option(None, "--set", help="Override a recipe field: --set quantize.calibration_samples=64 (repeatable)."),
    data: str = typer.Option(None, "--data", help="Curated dataset folder or record file for calibration and evaluation."),
    out_dir: Path = typer.Option(None, "--out", help="Folder to write (default: quantize.output, runs/{name}-{method}{bits})."),
    max_ppl_increase: float = typer.Option(None, "--max-ppl-increase", help="Exit 1 when perplexity rises by more than this fraction (0.05 = 5%)."),
    device: str = typer.Option(None, "--device", help="auto, cpu or cuda (int8 runs on CPU only)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output folder (one holding a registered model is kept; a new sibling folder is written)."),
    json_: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout."),
) -> None:
    """Quantize a model, save it for serve/bench/abtest, and measure the quality cost."""
    from cvml.errors import RecipeError
    from cvml.recipe import QuantizeSpec, resolve_recipe

    given = dict(zip(_FLAGS, (method, bits, group_size, data, device, max_ppl_increase)))
    stray = [o for o in set_ or [] if not o.startswith("quantize.")]
    if recipe is None and stray:
        raise RecipeError(
            f"--set {stray[0]} needs a recipe: without --recipe only quantize.* fields can be set",
            hint="Pass --recipe recipe.yaml, or set quantize.<field>.",
        )
    resolved = resolve_recipe(recipe, set_, {f"quantize.{key}": value for key, value in given.items()}, name="quantize")
    spec = resolved.quantize or QuantizeSpec()
    if recipe is None:
        resolved = None  # flags alone: no recipe to record, data and seed from the source's run

    from cvml.quantize import quantize as run

    with progress_bars("quantize", enabled=not json_) as on_progress:
        result = run(source, spec, recipe=resolved, output=out_dir, overwrite=overwrite,
                     seed=resolved.seed if resolved is not None else 42, on_progress=on_progress)
    if json_:
        emit_json(result.as_dict())
    else:
        _render(result)
    if not result.passed:
        raise typer.Exit(1)


def _render(result) -> None:
    from rich.table import Table

    ppl, size, mem, gate = result.perplexity, result.size, result.memory, result.gate
    table = Table("", "source", "quantized", "change", title=f"cvml quantize: {result.method} {result.params['bits']}-bit")
    table.add_row("perplexity", f"{ppl['source']['ppl']:.4f}", f"{ppl['quantized']['ppl']:.4f}", f"{ppl['increase']:+.2%}")
    table.add_row(
        "weights on disk", f"{size['source_weights_bytes'] / 2**20:.2f} MB", f"{size['quantized_weights_bytes'] / 2**20:.2f} MB",
        f"{size['ratio_vs_fp16']:.2f}× fp16",
    )
    table.add_row("in memory", f"{mem['source_resident_mb']:.1f} MB", f"{mem['quantized_resident_mb']:.1f} MB", "")
    table.add_row("load time", f"{result.load_s['source']:.2f} s", f"{result.load_s['quantized']:.2f} s", "")
    if result.quality:
        q = result.quality
        table.add_row("chrF (greedy)", f"{q['source']['chrf']:.2f}", f"{q['quantized']['chrf']:.2f}", f"{q['identical_outputs']:.0%} identical")
    out.print(table)
    if gate["max_ppl_increase"] is not None:
        verdict = "[green]PASS[/]" if gate["passed"] else "[bold red]FAIL[/]"
        out.print(f"perplexity guard +{gate['max_ppl_increase']:.1%}: {verdict}")
    out.print(f"registered: {result.registered or 'no (' + str(result.not_registered_because) + ')'}", highlight=False)
    err.print(f"Model folder: {result.output_dir} (quantize_report.md, quantize_report.json, manifest.json)")
