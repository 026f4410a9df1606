"""The model registry library: numbering, references, alias stacks, lineage, audit, concurrency."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

import cvml
from cvml.errors import RegistryError
from cvml.paths import cvml_home
from cvml.registry import Registry, default_registry_path, parse_ref
from cvml.manifest import sha256_tree
from cvml.registry.refs import Ref


@pytest.fixture
def home(tmp_path, monkeypatch, store_backend) -> Path:
    """CVML_HOME, with the registry on each backend in turn (SQLite there, or CVML_DB_URL)."""
    monkeypatch.setenv("CVML_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CVML_ACTOR", "tester")
    return tmp_path / "home"


@pytest.fixture
def reg(home) -> Registry:
    return Registry()


@pytest.fixture
def folder(tmp_path):
    """Make a model folder under tmp_path and return its path."""

    def make(name: str) -> Path:
        path = tmp_path / "models" / name
        path.mkdir(parents=True, exist_ok=True)
        (path / "config.json").write_text(json.dumps({"name": name}))
        return path

    return make


def _error(fn, *args, **kwargs) -> RegistryError:
    with pytest.raises(RegistryError) as info:
        fn(*args, **kwargs)
    return info.value


# ------------------------------------------------------------------------------ location


@pytest.mark.sqlite_only
def test_registry_lives_in_cvml_home(home, monkeypatch, tmp_path, folder):
    assert cvml_home() == home
    assert default_registry_path() == home / "registry.db"
    Registry().register(folder("m"), "m", "base")
    assert (home / "registry.db").is_file()

    monkeypatch.delenv("CVML_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert cvml_home() == tmp_path / "user" / ".cvml"


def test_location_can_be_a_file_or_a_folder(tmp_path, folder):
    Registry(tmp_path / "a.db").register(folder("m"), "m", "base")
    assert Registry(tmp_path / "a.db").names() == ["m"]
    assert Registry(tmp_path).path == tmp_path / "registry.db"


def test_an_unreachable_postgres_is_one_line_with_a_hint_and_no_password():
    err = _error(Registry("postgresql://cvml:s3cret-pw@127.0.0.1:1/cvml").names)
    assert err.message == "cannot reach the database at postgresql://cvml:***@127.0.0.1:1/cvml"
    assert "CVML_DB_URL" in err.hint and "s3cret" not in err.message + err.hint


@pytest.mark.sqlite_only
def test_schema_is_versioned_and_in_wal_mode(reg, folder):
    from cvml.registry.db import REGISTRY

    reg.register(folder("m"), "m", "base")
    later = REGISTRY.version + 1
    with sqlite3.connect(reg.path) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(n,) for n in range(1, later)]
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        conn.execute("INSERT INTO schema_version VALUES (?, 'later')", (later,))
    err = _error(Registry(reg.path).names)  # the version is checked when a store opens the database
    assert f"schema version {later}" in err.message and "upgrade cvml" in err.hint


def test_a_registry_from_before_the_experiments_migration_keeps_its_experiments(tmp_path):
    """Version-1 registries may hold an experiments table an earlier cvml created on first
    use; migration 2 adopts it with its rows."""
    from cvml.registry import db
    from cvml.registry.experiments import ExperimentStore

    path = tmp_path / "registry.db"
    with sqlite3.connect(path) as conn:
        for statement in db._MIGRATIONS[0] + db._MIGRATIONS[1]:
            conn.execute(statement.format(identity="INTEGER PRIMARY KEY"))
        conn.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)")
        conn.execute("INSERT INTO schema_version VALUES (1, 'then')")
        conn.execute(
            "INSERT INTO experiments VALUES ('old', 'cv@prod', 'cv@canary', 'cv@1', 'cv@2', '90/10', 'running',"
            " '2026-11-01T00:00:00+00:00', NULL, 'ci', NULL)"
        )
    assert [e.name for e in ExperimentStore(path).list()] == ["old"]
    with sqlite3.connect(path) as conn:  # and every later migration
        applied = conn.execute("SELECT version FROM schema_version").fetchall()
        assert applied == [(n,) for n in range(1, db.REGISTRY.version + 1)]


def test_a_file_that_is_not_a_database_is_reported(tmp_path):
    (tmp_path / "junk.db").write_text("not sqlite " * 200)
    err = _error(Registry(tmp_path / "junk.db").names)
    assert "cannot use the registry" in err.message and "not a database" in err.message


@pytest.mark.sqlite_only
def test_a_registry_locked_too_long_is_reported(reg, folder, monkeypatch):
    reg.register(folder("m"), "m", "base")
    monkeypatch.setattr("cvml.storage.database._BUSY_TIMEOUT_S", 0.2)
    holder = sqlite3.connect(reg.path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        err = _error(reg.register, folder("m"), "m", "base")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert "stayed locked for over 0.2 s" in err.message and "try again" in err.hint
    assert reg.resolve("m").version == 1  # reads are not blocked by a writer (WAL)


# ----------------------------------------------------------------------------- register


def test_versions_are_numbered_per_name_from_one(reg, folder):
    refs = [reg.register(folder(f"a{i}"), "a", "finetune").ref for i in range(3)]
    refs.append(reg.register(folder("b"), "b", "base").ref)
    assert refs == ["a@1", "a@2", "a@3", "b@1"]
    assert [v.ref for v in reg.versions()] == ["a@1", "a@2", "a@3", "b@1"]
    assert [v.version for v in reg.versions("a")] == [1, 2, 3]
    assert reg.names() == ["a", "b"]


def test_register_stores_absolute_path_utc_time_actor_and_metadata(reg, folder, monkeypatch):
    folder("rel")
    monkeypatch.chdir(folder("rel").parent)
    before = datetime.now().astimezone()
    v = reg.register("rel", "m", "finetune", metadata={"bleu": 0.31, "recipe": "tiny-cv"})
    assert v.path == str(folder("rel").resolve())
    created = datetime.fromisoformat(v.created_at)
    assert created.utcoffset() == timedelta(0)
    assert before - timedelta(seconds=1) <= created <= datetime.now().astimezone() + timedelta(seconds=1)
    assert v.actor == "tester"  # from CVML_ACTOR
    assert v.metadata == {"bleu": 0.31, "recipe": "tiny-cv"}
    assert (v.kind, v.parent, v.datasets, v.aliases, v.registered) == ("finetune", None, (), (), True)
    assert reg.register("rel", "m", "finetune", actor="ci-bot").actor == "ci-bot"

    monkeypatch.delenv("CVML_ACTOR")
    monkeypatch.setattr("getpass.getuser", lambda: "alice")
    assert reg.register("rel", "m", "finetune").actor == "alice"


def test_register_records_datasets_with_hashes(reg, folder, tmp_path):
    train = tmp_path / "train.jsonl"
    train.write_text('{"source_text": "did stuff", "target": "Led X"}\n')
    v = reg.register(
        folder("m"),
        "m",
        "finetune",
        datasets=[{"path": str(train)}, {"path": "elsewhere/eval.jsonl", "sha256": "ab" * 32, "role": "eval"}],
    )
    assert [(d.role, d.sha256) for d in v.datasets] == [
        ("train", hashlib.sha256(train.read_bytes()).hexdigest()),
        ("eval", "ab" * 32),
    ]
    assert v.datasets[0].path == str(train)
    assert reg.resolve("m").datasets == v.datasets


def test_folder_digest_depends_on_content_not_listing_order(tmp_path):
    first, second = tmp_path / "d1", tmp_path / "d2"
    for root, order in ((first, ["a", "b"]), (second, ["b", "a"])):
        (root / "sub").mkdir(parents=True)
        for name in order:
            (root / "sub" / f"{name}.txt").write_text(name)
    assert sha256_tree(first) == sha256_tree(second)
    (second / "sub" / "a.txt").write_text("changed")
    assert sha256_tree(first) != sha256_tree(second)


def test_register_errors_say_what_to_do(reg, folder, tmp_path):
    err = _error(reg.register, tmp_path / "missing", "m", "base")
    assert "no such file or folder" in err.message and err.hint
    err = _error(reg.register, folder("m"), "m", "finetuned")
    assert "unknown model kind 'finetuned'" in err.message and "did you mean 'finetune'" in err.hint
    err = _error(reg.register, folder("m"), "team/m", "base")
    assert "invalid model name" in err.message
    err = _error(reg.register, folder("m"), "m", "finetune", parent=str(folder("unregistered")))
    assert "not a registered model version" in err.message and "cvml models register" in err.hint
    err = _error(reg.register, folder("m"), "m", "base", metadata={"when": datetime.now()})
    assert "not JSON-serializable" in err.message
    err = _error(reg.register, folder("m"), "m", "base", datasets=[{"path": str(tmp_path / "gone.jsonl")}])
    assert "sha256 cannot be computed" in err.message
    err = _error(reg.register, folder("m"), "m", "base", datasets=[{"path": "x", "sha": "1"}])
    assert "bad dataset entry" in err.message
    assert reg.names() == []  # nothing half-registered


# --------------------------------------------------------------------------- references


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("cv", Ref("cv")),
        ("cv@latest", Ref("cv")),
        ("cv@3", Ref("cv", version=3)),
        ("cv@v3", Ref("cv", version=3)),
        ("cv-rewriter.q4@prod", Ref("cv-rewriter.q4", alias="prod")),
        ("runs/r1/final", None),
        ("./model", None),
        ("cv@", Ref("cv")),
        ("cv@pr od", None),
    ],
)
def test_parse_ref(text, expected):
    assert parse_ref(text) == expected


def test_resolve_every_reference_form(reg, folder):
    paths = [folder(f"v{i}") for i in range(1, 4)]
    for path in paths:
        reg.register(path, "cv", "finetune")
    reg.promote("cv@2", "prod")
    assert reg.resolve("cv").version == 3
    assert reg.resolve("cv@latest").version == 3
    assert reg.resolve("cv@1").path == str(paths[0])
    assert reg.resolve("cv@v1").version == 1
    assert reg.resolve("cv@prod").version == 2
    assert reg.resolve("cv@prod").aliases == ("prod",)
    assert reg.resolve(paths[1]).ref == "cv@2"  # a registered path resolves to its version


def test_an_unregistered_path_resolves_to_an_unregistered_version(reg, folder):
    path = folder("local-model")
    v = reg.resolve(str(path))
    assert (v.registered, v.version, v.kind, v.name) == (False, None, None, "local-model")
    assert v.path == str(path) and v.ref == str(path)


def test_a_registered_name_wins_over_a_folder_of_that_name(reg, folder, monkeypatch):
    reg.register(folder("elsewhere"), "cv", "base")
    monkeypatch.chdir(folder("cv").parent)  # ./cv exists too
    assert reg.resolve("cv").ref == "cv@1"
    assert not reg.resolve("./cv").registered


def test_unknown_references_suggest_what_exists(reg, folder):
    for name in ("cv-rewriter", "cv-tailor"):
        reg.register(folder(name), name, "finetune")
    reg.register(folder("r2"), "cv-rewriter", "finetune")
    reg.register(folder("r3"), "cv-rewriter", "finetune")
    reg.promote("cv-rewriter@1", "prod")
    reg.promote("cv-rewriter@2", "canary")

    err = _error(reg.resolve, "cv-rewritter")
    assert "no model named 'cv-rewritter'" in err.message
    assert err.hint == "did you mean 'cv-rewriter'? registered models: cv-rewriter, cv-tailor"
    err = _error(reg.resolve, "cv-rewriter@9")
    assert err.message == "cv-rewriter has no version 9" and "versions 1 to 3" in err.hint
    err = _error(reg.resolve, "cv-rewriter@prd")
    assert err.hint == "did you mean 'prod'? aliases of cv-rewriter: canary, prod"
    err = _error(reg.resolve, "cv-tailor@prod")
    assert err.hint == "there are no aliases of cv-tailor yet"
    err = _error(reg.resolve, "no/such/folder")
    assert "neither a model reference nor an existing path" in err.message


def test_empty_registry_says_so(reg):
    assert _error(reg.resolve, "cv").hint == "there are no registered models yet"
    assert reg.versions() == [] and reg.events() == []


# --------------------------------------------------------------------- promote / rollback


def _three_versions(reg: Registry, folder) -> None:
    for i in range(1, 4):
        reg.register(folder(f"v{i}"), "cv", "finetune")


def test_promote_pushes_and_rollback_pops(reg, folder):
    _three_versions(reg, folder)
    for version in (1, 2, 3):
        reg.promote(f"cv@{version}", "prod", reason=f"ship v{version}")
    assert reg.alias_stack("cv", "prod") == [1, 2, 3]
    assert reg.resolve("cv@prod").version == 3

    first = reg.rollback("cv", "prod", actor="oncall", reason="latency regression")
    assert (first.action, first.from_version, first.to_version) == ("rollback", 3, 2)
    assert (first.actor, first.reason) == ("oncall", "latency regression")
    assert reg.resolve("cv@prod").version == 2
    assert reg.rollback("cv", "prod").to_version == 1
    assert reg.resolve("cv@prod").version == 1

    err = _error(reg.rollback, "cv", "prod")
    assert "nothing to roll back to" in err.message and "cvml models promote" in err.hint
    assert reg.alias_stack("cv", "prod") == [1]


def test_promote_after_rollback_pushes_on_the_remaining_stack(reg, folder):
    _three_versions(reg, folder)
    reg.promote("cv@1", "prod")
    reg.promote("cv@2", "prod")
    reg.rollback("cv", "prod")
    event = reg.promote("cv@3", "prod")
    assert (event.from_version, event.to_version) == (1, 3)
    assert reg.alias_stack("cv", "prod") == [1, 3]
    assert reg.rollback("cv", "prod").to_version == 1


def test_promoting_the_current_holder_changes_nothing(reg, folder):
    _three_versions(reg, folder)
    reg.promote("cv@1", "prod")
    reg.promote("cv@2", "prod")
    assert reg.promote("cv@2", "prod") is None
    assert reg.alias_stack("cv", "prod") == [1, 2]
    assert [e.action for e in reg.events("cv")].count("promote") == 2


def test_aliases_are_independent_per_name_and_alias(reg, folder):
    _three_versions(reg, folder)
    reg.register(folder("other"), "other", "base")
    reg.promote("cv@3", "canary")
    reg.promote("cv@canary", "prod")  # promote whatever canary holds
    reg.promote("cv@1", "canary")
    reg.promote("other", "prod")
    assert reg.resolve("cv@prod").version == 3
    assert reg.resolve("cv@canary").version == 1
    assert reg.resolve("other@prod").ref == "other@1"
    assert {v.ref: v.aliases for v in reg.versions("cv")} == {"cv@1": ("canary",), "cv@2": (), "cv@3": ("prod",)}


def test_promote_and_rollback_errors(reg, folder):
    _three_versions(reg, folder)
    reg.promote("cv@1", "prod")
    for bad in ("v2", "3", "latest", "pr od"):
        assert "invalid alias" in _error(reg.promote, "cv@2", bad).message
    err = _error(reg.promote, str(folder("unregistered")), "prod")
    assert "not a registered model version" in err.message
    err = _error(reg.rollback, "cv", "canary")
    assert err.message == "cv has no alias 'canary'" and err.hint == "aliases of cv: prod"
    err = _error(reg.rollback, "cvv", "prod")
    assert "did you mean 'cv'" in err.hint


def test_every_change_is_an_audit_event(reg, folder):
    reg.register(folder("v1"), "cv", "finetune", reason="first run")
    reg.register(folder("v2"), "cv", "finetune", actor="trainer")
    reg.register(folder("b"), "base", "base")
    reg.promote("cv@1", "prod", actor="alice", reason="initial")
    reg.promote("cv@2", "prod", actor="bob", reason="+2 BLEU")
    reg.rollback("cv", "prod", actor="carol", reason="complaints")

    rows = [(e.action, e.actor, e.name, e.alias, e.from_version, e.to_version, e.reason) for e in reg.events("cv")]
    assert rows == [
        ("register", "tester", "cv", None, None, 1, "first run"),
        ("register", "trainer", "cv", None, None, 2, None),
        ("promote", "alice", "cv", "prod", None, 1, "initial"),
        ("promote", "bob", "cv", "prod", 1, 2, "+2 BLEU"),
        ("rollback", "carol", "cv", "prod", 2, 1, "complaints"),
    ]
    everything = reg.events()
    assert len(everything) == 6 and [e.id for e in everything] == sorted(e.id for e in everything)
    assert all(datetime.fromisoformat(e.at).utcoffset() == timedelta(0) for e in everything)
    assert _error(reg.events, "cvv").hint == "did you mean 'cv'? registered models: base, cv"


# ------------------------------------------------------------------------------ lineage


def test_lineage_of_a_three_level_chain(reg, folder, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("bundled text")
    train = tmp_path / "train.jsonl"
    train.write_text("{}\n")
    reg.register(folder("base"), "tiny-base", "base", datasets=[{"path": str(corpus), "role": "pretrain"}])
    reg.register(
        folder("ft"),
        "cv",
        "finetune",
        parent="tiny-base",
        datasets=[{"path": str(train)}, {"path": "eval.jsonl", "sha256": "e" * 64, "role": "eval"}],
    )
    reg.promote("cv@1", "prod")
    quantized = reg.register(folder("q4"), "cv-q4", "quantized", parent="cv@prod")
    second = reg.register(folder("ft2"), "cv", "finetune", parent=str(folder("base")))  # parent given by path

    assert quantized.parent == "cv@1" and second.parent == "tiny-base@1"

    up = reg.lineage("cv-q4")
    assert up.model.ref == "cv-q4@1"
    assert [a.ref for a in up.ancestors] == ["cv@1", "tiny-base@1"]
    assert [(d.role, d.sha256) for d in up.ancestors[0].datasets] == [
        ("train", hashlib.sha256(b"{}\n").hexdigest()),
        ("eval", "e" * 64),
    ]
    assert [d.role for d in up.ancestors[1].datasets] == ["pretrain"]
    assert up.descendants == ()

    down = reg.lineage("tiny-base@1")
    assert down.ancestors == ()
    assert [(n.model.ref, [c.model.ref for c in n.children]) for n in down.descendants] == [
        ("cv@1", ["cv-q4@1"]),
        ("cv@2", []),
    ]

    middle = reg.lineage("cv@prod").to_dict()
    json.dumps(middle)
    assert [a["ref"] for a in middle["ancestors"]] == ["tiny-base@1"]
    assert [d["model"]["ref"] for d in middle["descendants"]] == ["cv-q4@1"]
    assert middle["model"]["aliases"] == ["prod"]


def test_lineage_needs_a_registered_version(reg, folder):
    err = _error(reg.lineage, str(folder("loose")))
    assert "has no lineage" in err.message and "--parent" in err.hint


# --------------------------------------------------------------------------- concurrency

_WORKER = """
import sys, time
from cvml.registry import Registry

db, model, worker, count, start_at, mode = sys.argv[1:]
reg = Registry(db)
time.sleep(max(0.0, float(start_at) - time.time()))  # start together to maximize contention
for i in range(int(count)):
    if mode == "register":
        v = reg.register(model, "cv", "finetune", metadata={"worker": int(worker), "i": i}, actor=f"w{worker}")
        reg.promote(v.ref, "prod", actor=f"w{worker}")
    else:
        reg.rollback("cv", "prod", actor=f"w{worker}")
"""


def _run_workers(db: Path, model: Path, workers: int, count: int, mode: str) -> None:
    src = str(Path(cvml.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))}
    start_at = time.time() + 0.5
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(db), str(model), str(w), str(count), str(start_at), mode],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(workers)
    ]
    for proc in procs:
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr


@pytest.mark.slow
def test_concurrent_processes_never_duplicate_or_skip(tmp_path, folder, store_backend):
    workers, count = 4, 20
    # SQLite: the file does not exist yet, so the workers also race to create its schema.
    db = tmp_path / "shared.db" if store_backend == "sqlite" else os.environ["CVML_DB_URL"]
    total = workers * count
    _run_workers(db, folder("m"), workers, count, "register")

    reg = Registry(db)
    versions = reg.versions("cv")
    assert [v.version for v in versions] == list(range(1, total + 1))
    assert sorted((v.metadata["worker"], v.metadata["i"]) for v in versions) == [
        (w, i) for w in range(workers) for i in range(count)
    ]

    # Every version was promoted once: the stack holds each exactly once, and the promote
    # events form one unbroken chain (each starts where the previous one ended).
    stack = reg.alias_stack("cv", "prod")
    assert sorted(stack) == list(range(1, total + 1))
    promotes = [e for e in reg.events("cv") if e.action == "promote"]
    assert [e.to_version for e in promotes] == stack
    assert [e.from_version for e in promotes] == [None, *stack[:-1]]

    _run_workers(db, folder("m"), workers, 5, "rollback")
    assert reg.alias_stack("cv", "prod") == stack[: total - workers * 5]
    assert reg.resolve("cv@prod").version == stack[total - workers * 5 - 1]
    rollbacks = [e for e in reg.events("cv") if e.action == "rollback"]
    assert [(e.from_version, e.to_version) for e in rollbacks] == [
        (stack[k], stack[k - 1]) for k in range(total - 1, total - 1 - workers * 5, -1)
    ]
