"""Recipe schema: every problem at once with dotted paths, did-you-mean, --set coercion,
precedence, and every shipped recipe (and accelerate config) validates."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cvml.errors import RecipeError
from cvml.recipe import apply_overrides, explain, load_recipe, validate_recipe

ROOT = Path(__file__).resolve().parents[1]
MINIMAL = {"name": "x", "model": {"base": "some/model"}, "data": {"train": "d.jsonl"}}


def _write(tmp_path, data) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data), encoding="utf-8")
    return path


def test_defaults_fill_in():
    recipe = validate_recipe(MINIMAL)
    assert recipe.train.method == "lora" and recipe.train.lora.r == 16
    assert recipe.output_dir == Path("runs/x")


def test_all_problems_reported_at_once_with_paths_and_did_you_mean(tmp_path):
    bad = {
        "name": "x",
        "model": {"base": "m", "dtyp": "bfloat16"},
        "data": {"train": "d.jsonl", "max_seq_len": "long"},
        "train": {"lr": -1, "lora": {"rank": 8}, "schedular": "cosine"},
    }
    with pytest.raises(RecipeError) as info:
        load_recipe(_write(tmp_path, bad))
    problems = dict(info.value.problems)
    assert set(problems) == {"model.dtyp", "data.max_seq_len", "train.lr", "train.lora.rank", "train.schedular"}
    assert "did you mean 'model.dtype'" in problems["model.dtyp"]
    assert "did you mean 'train.scheduler'" in problems["train.schedular"]
    assert "allowed here" in problems["train.lora.rank"] and "r" in problems["train.lora.rank"]
    assert "greater than 0" in problems["train.lr"]
    assert "5 problems" in info.value.message


def test_missing_sections_and_unknown_top_level():
    with pytest.raises(RecipeError) as info:
        validate_recipe({"name": "x", "modle": {}}, require=("model", "data"))
    problems = dict(info.value.problems)
    assert problems["model"] == "required by this command but missing"
    assert problems["data"] == "required by this command but missing"
    assert "did you mean 'model'" in problems["modle"]


def test_cross_field_rule_names_the_fix():
    with pytest.raises(RecipeError) as info:
        validate_recipe({**MINIMAL, "model": {"base": "m", "load_in_4bit": True}, "train": {"method": "full"}})
    assert "needs train.method: lora" in info.value.problems[0][1]


def test_set_overrides_coerce_types_and_create_sections(tmp_path):
    path = _write(tmp_path, MINIMAL)
    recipe = load_recipe(path, ["train.lr=1e-4", "train.packing=false", "train.lora.target_modules=[q_proj,v_proj]", "seed=3"])
    assert recipe.train.lr == pytest.approx(1e-4)
    assert recipe.train.packing is False
    assert recipe.train.lora.target_modules == ["q_proj", "v_proj"]
    assert recipe.seed == 3


def test_grounding_off_survives_yaml(tmp_path):
    """YAML reads a bare `off` as false; the grounding settings take it as the mode "off"."""
    recipe = load_recipe(_write(tmp_path, MINIMAL), ["bench.grounding=off", "serve.grounding=numbers"])
    assert (recipe.bench.grounding, recipe.serve.grounding) == ("off", "numbers")
    with pytest.raises(RecipeError) as info:
        load_recipe(_write(tmp_path, MINIMAL), ["serve.grounding=on"])
    assert info.value.problems[0][0] == "serve.grounding"


def test_set_later_wins_and_bad_override_is_an_error():
    data = apply_overrides(MINIMAL, ["train.lr=1", "train.lr=2"])
    assert data["train"]["lr"] == 2
    with pytest.raises(RecipeError, match="expected dotted.key=value"):
        apply_overrides(MINIMAL, ["train.lr"])
    with pytest.raises(RecipeError, match="name is not a section"):
        apply_overrides(MINIMAL, ["name.x=1"])


def test_set_unknown_key_gets_did_you_mean(tmp_path):
    with pytest.raises(RecipeError) as info:
        load_recipe(_write(tmp_path, MINIMAL), ["train.learning_rate=1e-4"])
    assert info.value.problems[0][0] == "train.learning_rate"


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(RecipeError, match="recipe file not found"):
        load_recipe(tmp_path / "nope.yaml")
    with pytest.raises(RecipeError, match="not valid YAML at line 3"):
        load_recipe(_write(tmp_path, "name: x\nmodel:\n\tbase: m\n"))


def test_explain_lists_every_leaf_with_a_description():
    rows = {path: desc for path, _, desc in explain()}
    assert "train.lora.r" in rows and "model.base" in rows
    assert all(desc for path, desc in rows.items() if path.startswith("train.") and path != "train.weight_decay")


@pytest.mark.parametrize("path", sorted((ROOT / "recipes").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_recipes_validate_and_carry_a_launch_command(path):
    recipe = load_recipe(path)
    assert recipe.name
    assert "cvml finetune" in path.read_text(encoding="utf-8").split("\nname:")[0]
    if recipe.train.accelerate_config:
        assert (ROOT / recipe.train.accelerate_config).is_file()


@pytest.mark.parametrize("path", sorted((ROOT / "recipes" / "accelerate").glob("*.yaml")), ids=lambda p: p.name)
def test_accelerate_configs_load(path):
    from accelerate.commands.config.config_args import ClusterConfig

    config = ClusterConfig.from_yaml_file(path)
    assert config.num_processes >= 2 and config.use_cpu is False


def test_accelerate_config_with_a_typo_is_refused(tmp_path):
    from accelerate.commands.config.config_args import ClusterConfig

    text = (ROOT / "recipes/accelerate/ddp.yaml").read_text().replace("num_machines", "num_machine")
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    with pytest.raises(ValueError):
        ClusterConfig.from_yaml_file(bad)


def test_resolve_recipe_precedence_and_typed_flags(tmp_path):
    """defaults < YAML < --set < flags; a flag's value is placed as given, never re-parsed."""
    from cvml.recipe import resolve_recipe

    path = tmp_path / "r.yaml"
    path.write_text("name: r\nseed: 1\ntrain: {lr: 0.1, output_dir: from-yaml}\n", encoding="utf-8")
    recipe = resolve_recipe(path, ["train.lr=0.2", "seed=2"], {"train.output_dir": "2024", "seed": 3, "train.max_steps": None})
    assert (recipe.train.lr, recipe.seed, recipe.train.output_dir) == (0.2, 3, "2024")
    from cvml.recipe import TrainSpec

    assert recipe.train.max_steps == TrainSpec().max_steps  # None: not given
    without = resolve_recipe(None, ["serve.max_queue=5"], {"serve.model": "m@prod"}, name="serve")
    assert (without.name, without.serve.max_queue, without.serve.model) == ("serve", 5, "m@prod")
    dropped = resolve_recipe(None, ["serve.variants=[a=x, b=y]", "serve.split=50/50"], {"serve.model": "m"},
                             name="serve", unset=("serve.variants", "serve.split"))
    assert (dropped.serve.variants, dropped.serve.split) == ([], None)


def test_resolve_recipe_reports_a_bad_flag_with_its_path():
    from cvml.recipe import resolve_recipe

    with pytest.raises(RecipeError) as info:
        resolve_recipe(None, [], {"bench.trials": "many"}, name="b")
    assert [path for path, _ in info.value.problems] == ["bench.trials"]
