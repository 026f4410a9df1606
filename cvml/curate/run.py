"""Recipe-level entry for `cvml curate`: pick the tokenizer, show progress, run the pipeline."""

from __future__ import annotations

from cvml.curate.pipeline import CurateResult, curate
from cvml.recipe import Recipe, recipe_to_dict, require_sections


def run_curate(recipe: Recipe, progress: bool = True) -> CurateResult:
    """Curate per recipe.curate into recipe.curate_output; length limits count tokens of
    curate.tokenizer, else of model.base, else words."""
    require_sections(recipe, "curate")
    tokenizer = _tokenizer(recipe)
    if not progress:
        return curate(recipe.curate, recipe.curate_output, tokenizer=tokenizer, recipe=recipe_to_dict(recipe))
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from cvml.cli._output import err

    with Progress(SpinnerColumn(), TextColumn("curate: {task.completed:,} rows read"), TimeElapsedColumn(), console=err) as bar:
        task = bar.add_task("curate", total=None)
        return curate(
            recipe.curate, recipe.curate_output, tokenizer=tokenizer, recipe=recipe_to_dict(recipe),
            progress=lambda n: bar.update(task, completed=n),
        )


def _tokenizer(recipe: Recipe):
    ref = recipe.curate.tokenizer or (recipe.model.base if recipe.model else None)
    if ref is None:
        return None
    from cvml._quiet import quiet_libraries
    from cvml.recipe import ModelSpec
    from cvml.train.modeling import load_tokenizer

    quiet_libraries()
    spec = recipe.model if recipe.model and recipe.model.base == ref else ModelSpec(base=ref)
    return load_tokenizer(spec)
