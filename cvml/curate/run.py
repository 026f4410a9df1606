"""Recipe-level entry for `cvml curate`: pick the tokenizer, report progress, run the pipeline."""

from __future__ import annotations

from cvml.curate.pipeline import CurateResult, curate
from cvml.progress import OnProgress, Phase
from cvml.recipe import Recipe, recipe_to_dict, require_sections


def run_curate(recipe: Recipe, *, on_progress: OnProgress | None = None) -> CurateResult:
    """Curate per recipe.curate into recipe.curate_output; length limits count tokens of
    curate.tokenizer, else of model.base, else words. Reports phase "rows read"."""
    require_sections(recipe, "curate")
    tokenizer = _tokenizer(recipe)
    rows = Phase(on_progress, "rows read")
    return curate(
        recipe.curate, recipe.curate_output, tokenizer=tokenizer, recipe=recipe_to_dict(recipe),
        progress=None if on_progress is None else rows.update,
    )


def _tokenizer(recipe: Recipe):
    ref = recipe.curate.tokenizer or (recipe.model.base if recipe.model else None)
    if ref is None:
        return None
    from cvml._quiet import quiet_libraries
    from cvml.recipe import ModelSpec
    from cvml.modelio import load_tokenizer

    quiet_libraries()
    spec = recipe.model if recipe.model and recipe.model.base == ref else ModelSpec(base=ref)
    return load_tokenizer(spec.base, revision=spec.revision, trust_remote_code=spec.trust_remote_code)
