"""A version is its content, not a folder name: the registry records a content hash at
registration (migration 3), loading a version checks it, `--overwrite` never rewrites a
registered folder, and two versions never share a folder whose content changed."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from pathlib import Path

import pytest

from cvml.errors import ConfigError, ModelError, RegistryError
from cvml.manifest import sha256_tree
from cvml.registry import Registry


@pytest.fixture
def reg(tmp_path, monkeypatch, store_backend) -> Registry:
    """A registry on each backend in turn (SQLite under CVML_HOME, or CVML_DB_URL)."""
    monkeypatch.setenv("CVML_ACTOR", "tester")
    return Registry()


@pytest.fixture
def folder(tmp_path):
    """A model folder a registry test can resolve (config.json) with stand-in weights."""

    def make(name: str, weights: bytes = b"weights-1") -> Path:
        path = tmp_path / "models" / name
        path.mkdir(parents=True, exist_ok=True)
        (path / "config.json").write_text(json.dumps({"name": name}))
        (path / "model.safetensors").write_bytes(weights)
        return path

    return make


def _rewrite(path: Path, data: bytes) -> None:
    """Replace a file's content, as a later run writing into the folder would."""
    before = path.stat().st_mtime_ns
    path.write_bytes(data)
    os.utime(path, ns=(before + 1_000_000_000, before + 1_000_000_000))


# --------------------------------------------------------------------------- registration


def test_register_records_the_content_hash(reg, folder):
    model = folder("m")
    version = reg.register(model, "m", "base")
    assert version.sha256 == sha256_tree(model)  # a plain model folder: exactly sha256_tree
    assert reg.resolve("m@1").sha256 == version.sha256
    assert version.to_dict()["sha256"] == version.sha256


def test_files_cvml_writes_about_a_model_after_registration_are_not_hashed(reg, folder):
    """quantize completes manifest.json and writes its report once the version number is known."""
    from cvml.modelio import resolve_model

    model = folder("q")
    reg.register(model, "q", "quantized")
    (model / "manifest.json").write_text(json.dumps({"registered": "q@1"}))
    (model / "quantize_report.json").write_text("{}")
    (model / "quantize_report.md").write_text("# report")
    assert resolve_model("q@1").version == 1


def test_a_registered_folder_whose_content_changed_cannot_be_registered_again(reg, folder):
    model = folder("m")
    reg.register(model, "m", "finetune")
    assert reg.register(model, "m", "finetune").version == 2  # same content: the same model, allowed
    _rewrite(model / "model.safetensors", b"weights-2")
    with pytest.raises(RegistryError) as info:
        reg.register(model, "m", "finetune")
    err = info.value
    assert "m@1" in err.message and "m@2" in err.message and "new folder" in err.hint
    assert [v.version for v in reg.versions("m")] == [1, 2]  # nothing was recorded


def test_registered_under_finds_versions_inside_a_folder(reg, folder, tmp_path):
    run = tmp_path / "models"
    reg.register(folder("a"), "a", "base")
    reg.register(folder("ab"), "b", "base")  # a sibling whose name starts the same is not inside
    assert [v.ref for v in reg.registered_under(run / "a")] == ["a@1"]
    assert {v.ref for v in reg.registered_under(run)} == {"a@1", "b@1"}
    assert reg.registered_under(tmp_path / "elsewhere") == []


# --------------------------------------------------------------------------------- loading


def test_a_version_whose_folder_changed_is_refused_at_load(reg, folder):
    from cvml.modelio import resolve_model

    model = folder("m")
    reg.register(model, "m", "finetune")
    reg.promote("m@1", "prod")
    assert resolve_model("m@prod").ref == "m@1"
    _rewrite(model / "model.safetensors", b"weights-2")
    for ref in ("m@prod", "m@1", "m", str(model)):  # by alias, version, name and path alike
        with pytest.raises(ModelError) as info:
            resolve_model(ref)
        assert "m@1" in info.value.message and "changed" in info.value.message, ref
        assert "register" in info.value.hint
    _rewrite(model / "model.safetensors", b"weights-1")  # put back: it verifies again
    assert resolve_model("m@prod").ref == "m@1"
    shutil.rmtree(model)
    with pytest.raises(ModelError, match="m@1"):
        resolve_model("m@1")


def test_load_for_inference_checks_the_hash_of_a_real_model(tmp_path, tiny_base):
    from cvml.modelio import load_for_inference, resolve_model

    model = tmp_path / "cv-model"
    shutil.copytree(tiny_base, model)
    Registry().register(model, "cv", "finetune")
    assert load_for_inference("cv@1", device="cpu").ref.ref == "cv@1"
    resolved = resolve_model("cv@1")  # serve resolves first and loads later
    config = json.loads((model / "generation_config.json").read_text())
    config["max_new_tokens"] = 7
    (model / "generation_config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="cv@1"):
        load_for_inference(resolved, device="cpu")
    with pytest.raises(ModelError, match="cv@1"):
        load_for_inference("cv@1", device="cpu")


def test_verification_is_cached_by_file_identity(folder, monkeypatch):
    """Files older than the racy window are hashed once per process; a rewrite is seen."""
    from cvml.registry import integrity

    model = folder("big")
    calls: list[Path] = []
    real = integrity.sha256_file
    monkeypatch.setattr(integrity, "sha256_file", lambda path: calls.append(Path(path)) or real(path))
    first = integrity.model_sha256(model)
    assert integrity.model_sha256(model) == first and len(calls) == 4  # just written: not cached yet

    monkeypatch.setattr(integrity, "_now_ns", lambda: time.time_ns() + 60 * 10**9)  # a minute later
    calls.clear()
    integrity.model_sha256(model)
    integrity.model_sha256(model)
    assert len(calls) == 2  # hashed once, then answered from the cache
    _rewrite(model / "model.safetensors", b"weights-X")  # same size, other content
    assert integrity.model_sha256(model) != first


# ------------------------------------------------------------- finetune and quantize re-runs


def test_finetune_overwrite_of_a_registered_run_writes_a_new_folder(make_recipe):
    from cvml.modelio import resolve_model
    from cvml.recipe import load_recipe
    from cvml.train import finetune

    recipe = load_recipe(make_recipe("imm", train={"method": "full", "max_steps": 5, "eval_every": 5, "save_every": 4}))
    first = finetune(recipe)
    reg = Registry()
    reg.promote("imm@1", "prod")
    v1 = reg.resolve("imm@1")

    with pytest.raises(ConfigError) as info:  # resuming would rewrite the registered model
        finetune(recipe, resume=True)
    assert "imm@1" in info.value.message and "--overwrite" in info.value.hint

    second = finetune(recipe, overwrite=True)
    assert second.registered == "imm@2" and Path(second.run_dir) != Path(first.run_dir)
    assert Path(second.run_dir).parent == Path(first.run_dir).parent
    v2 = reg.resolve("imm@2")
    assert v2.path != v1.path  # (same seed, same weights: the hashes may well be equal)
    assert resolve_model("imm@1").path == Path(v1.path)  # v1's folder is intact and verifies
    assert json.loads((Path(first.run_dir) / "result.json").read_text())["registered"] == "imm@1"

    reg.promote("imm@2", "prod")
    assert resolve_model("imm@prod").path == Path(v2.path)
    reg.rollback("imm", "prod")
    assert resolve_model("imm@prod").path == Path(v1.path)  # a rollback changes the model

    third = finetune(recipe, overwrite=True)  # again (make demo runs --overwrite every time)
    assert third.registered == "imm@3" and len({first.run_dir, second.run_dir, third.run_dir}) == 3


def test_quantize_overwrite_of_a_registered_output_writes_a_new_folder(tiny_base, tiny_data, tmp_path):
    from cvml.modelio import resolve_model
    from cvml.quantize import quantize
    from cvml.recipe import QuantizeSpec

    registry = Registry()
    registry.register(tiny_base, "tiny", "base")
    spec = QuantizeSpec(method="int8", data=str(tiny_data), calibration_samples=8, eval_samples=4, quality_samples=0)
    out = tmp_path / "runs" / "tiny-int8"
    first = quantize("tiny@1", spec, output=out)
    assert first.registered == "tiny@2" and Path(first.output_dir) == out
    again = quantize("tiny@1", spec, output=out, overwrite=True)
    assert again.registered == "tiny@3" and Path(again.output_dir) != out and Path(again.output_dir).parent == out.parent
    assert resolve_model("tiny@2").path == out.resolve()  # still there, still verifies
    assert registry.resolve("tiny@3").path == str(Path(again.output_dir).resolve())


# -------------------------------------------------------------------------------- migration


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_migration_3_adds_the_hash_and_older_versions_stay_unverified(backend, request, tmp_path, folder):
    """A registry written before migration 3 gains the column; its rows keep NULL and load."""
    from cvml.modelio import resolve_model
    from cvml.registry import db
    from cvml.storage import Database, storage_url
    from cvml.storage.admin import upgrade
    from cvml.storage.database import Schema

    location = request.getfixturevalue("pg_db_url") if backend == "postgres" else str(tmp_path / "old.db")
    old = Schema(name="registry", version_table="schema_version", migrations=db._MIGRATIONS[:2], error=RegistryError)
    url = storage_url(location, default_file=tmp_path / "registry.db")
    model = folder("old")
    with Database.open(url, old, migrate=True).write() as tx:
        tx.execute(
            "INSERT INTO model_versions (name, version, kind, path, created_at, actor, metadata)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            ("old", 1, "base", str(model.resolve()), "2026-01-01T00:00:00+00:00", "then", "{}"),
        )
    assert 3 in upgrade(location, [(db.REGISTRY, tmp_path / "registry.db")])["schemas"]["registry"]["applied"]
    reg = Registry(location)
    assert reg.resolve("old@1").sha256 is None
    assert resolve_model("old@1", reg).version == 1  # unverified, not refused
    assert reg.register(model, "old", "base").sha256 == sha256_tree(model)  # a NULL row cannot conflict
    if backend == "sqlite":
        with sqlite3.connect(location) as conn:
            assert (3,) in conn.execute("SELECT version FROM schema_version").fetchall()


# ---------------------------------------------------------------------------------- the CLI


def test_models_show_displays_the_hash_and_whether_it_verifies(runner, reg, folder):
    from cvml.cli.main import app

    model = folder("m")
    digest = reg.register(model, "m", "finetune").sha256

    def show(*args):
        result = runner.invoke(app, ["models", "show", "m@1", *args])
        assert result.exit_code == 0, result.output
        return result.stdout

    assert digest[:12] in show() and "verified" in show()
    payload = json.loads(show("--json"))
    assert payload["sha256"] == digest and payload["integrity"] == "verified"
    _rewrite(model / "model.safetensors", b"weights-2")
    assert "CHANGED" in show()
    assert json.loads(show("--json"))["integrity"] == "changed"
