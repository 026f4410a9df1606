"""`cvml validate recipe.yaml` — check a recipe without running anything."""

from __future__ import annotations

from pathlib import Path

import typer

from cvml.cli._output import emit_json, err, out


def validate(
    recipe: Path = typer.Argument(None, help="Recipe YAML to check.", show_default=False),
    set_: list[str] = typer.Option(None, "--set", help="Override a field: --set train.lr=1e-4 (repeatable)."),
    explain: bool = typer.Option(False, "--explain", help="List every recipe field with its default and meaning."),
    json_: bool = typer.Option(False, "--json", help="Print the resolved recipe as JSON."),
) -> None:
    """Check a recipe: every problem at once, with dotted paths and 'did you mean'."""
    from cvml import recipe as recipes

    if explain:
        rows = recipes.explain()
        if json_:
            emit_json([{"path": p, "default": d, "description": desc} for p, d, desc in rows])
            return
        from rich.table import Table

        table = Table("field", "default", "meaning")
        for row in rows:
            table.add_row(*row)
        out.print(table)
        return
    if recipe is None:
        raise typer.BadParameter("give a recipe file, or --explain", param_hint="RECIPE")
    resolved = recipes.resolve_recipe(recipe, set_)
    if json_:
        emit_json({"valid": True, "recipe": recipes.recipe_to_dict(resolved)})
    else:
        err.print(f"[green]✓[/] {recipe} is a valid recipe ({resolved.name}).")
