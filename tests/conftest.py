"""Shared fixtures: a tiny base model (and it loaded for inference) and synthetic data built
once per session, the CLI runner, and an isolated CVML_HOME (registry) per test.

Tiers: a test that starts a real component or takes more than about a second is marked
`integration`: it needs the tiny model or data (directly or through another fixture), a
database server, Ray or a browser, or it runs a pipeline over generated data for seconds.
`pytest_collection_modifyitems` applies the rule below (INTEGRATION_FIXTURES,
INTEGRATION_MODULE_FIXTURES, INTEGRATION_MODULES, tests on Postgres, tests marked `slow`);
a slow test in a module of fast ones carries `@pytest.mark.integration` itself. The rest is
the unit tier (`make test-fast`, well under 30 s). GPU tests are marked `gpu` and skipped
without CUDA."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

# Keep the test processes from oversubscribing the CPU (torch + gloo workers).
os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Nothing a test does may reach the real ~/.cvml (keys, registry, logs): session- and
# module-scoped fixtures run before the per-test CVML_HOME below, so they get this one.
os.environ["CVML_HOME"] = tempfile.mkdtemp(prefix="cvml-test-home-")
os.environ.pop("CVML_DB_URL", None)

# Fixtures that build or load a model or dataset: a test using any of them is an integration test.
INTEGRATION_FIXTURES = {"tiny_base", "tiny_data", "make_recipe", "loaded", "llama", "tiny_openvino", "backend"}
# A test of a store on a real Postgres server (started by scripts/pg_server.py) is one too.
INTEGRATION_FIXTURES |= {"pg_url", "pg_db_url"}
# So is one that starts another real component: a Postgres server of its own that it stops and
# restarts (test_store_faults), a local Ray (test_curate_engines).
INTEGRATION_FIXTURES |= {"own_pg", "local_ray"}
# A module's own fixtures that generate data for a pipeline that runs for seconds on it: the
# curation pipeline over a generated raw set, a month of simulated request logs
# (monitor_data.seed_log), a simulated day of logs to export, near-duplicates among 2,000
# generated people. Named per module: a name may be a cheap fixture elsewhere (`log` in test_requestlog).
INTEGRATION_MODULE_FIXTURES = {
    "test_curate": {"raw"},
    "test_curate_engines": {"raw"},
    "test_erasure": {"raw"},
    "test_cli_monitor": {"seeded"},
    "test_monitor_watch": {"seeded"},
    "test_monitor_export": {"log"},
    "test_dedup": {"synthetic"},
}
# Modules whose every test starts a real component: the report in headless Chromium.
INTEGRATION_MODULES = {"test_monitor_html"}


@pytest.fixture(scope="session")
def runner():
    """Typer's CliRunner; stdout and stderr apart, as a shell sees them."""
    from typer.testing import CliRunner

    return CliRunner()


@pytest.fixture(autouse=True)
def cvml_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "cvml-home"
    monkeypatch.setenv("CVML_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> Path:
    """A very small base model (seconds to build) through the real builder."""
    from cvml.tiny.model import TinySpec, build_base_model

    out = tmp_path_factory.mktemp("tiny") / "base"
    spec = TinySpec(
        vocab_size=1024, hidden_size=64, intermediate_size=128, num_layers=2, num_heads=2, num_kv_heads=1,
        pretrain_epochs=2.0, corpus_docs=300, pretrain_batch=8,
    )
    build_base_model(out, seed=0, spec=spec)
    return out


@pytest.fixture(scope="session")
def loaded(tiny_base):
    """The tiny base loaded for inference on the CPU (`cvml.modelio.LoadedModel`), once."""
    from cvml.modelio import load_for_inference

    return load_for_inference(tiny_base, device="cpu")


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    from cvml.tiny.synth import write_synthetic_dataset

    out = tmp_path_factory.mktemp("data")
    return Path(write_synthetic_dataset(out, n_people=60, seed=0)["path"])


@pytest.fixture
def make_recipe(tmp_path, tiny_base, tiny_data):
    """Write a small recipe for the tiny fixtures; keyword args override sections."""

    def make(name: str = "t", **sections) -> Path:
        recipe = {
            "name": name,
            "seed": 7,
            "model": {"base": str(tiny_base), "device": "cpu"},
            "data": {"train": str(tiny_data), "max_seq_len": 256},
            "train": {
                "method": "lora", "max_steps": 10, "micro_batch_size": 2, "lr": 3e-3, "warmup_ratio": 0.1,
                "eval_every": 5, "save_every": 4, "log_every": 1, "output_dir": str(tmp_path / "runs" / name),
            },
        }
        for section, values in sections.items():
            if isinstance(values, dict):
                recipe.setdefault(section, {}).update(values)
            else:
                recipe[section] = values
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
        return path

    return make


def _pg_unavailable(reason: str):
    """CI must not silently skip the Postgres tests: fail there, skip (with the reason) elsewhere."""
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        pytest.fail(f"PostgreSQL tests cannot run (CI is set): {reason}", pytrace=False)
    pytest.skip(f"PostgreSQL not available: {reason}")


@pytest.fixture(scope="session")
def pg_url():
    """URL of a real PostgreSQL server: $CVML_TEST_PG_URL when set (e.g. under
    `python scripts/pg_server.py run -- pytest ...`), else a throwaway server started for the
    session by scripts/pg_server.py and stopped at its end."""
    url = os.environ.get("CVML_TEST_PG_URL")
    if url:
        yield url
        return
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "scripts" / "pg_server.py"
    try:
        spec = importlib.util.spec_from_file_location("cvml_pg_server", path)
        pg_server = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(pg_server)
        server = pg_server.start()
    except Exception as e:  # noqa: BLE001 - any failure means "no server"; the reason is reported
        _pg_unavailable(f"could not start a throwaway server ({path.name}): {e}")
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def pg_db_url(pg_url):
    """URL of a fresh, empty database on the `pg_url` server, dropped after the test."""
    import uuid
    from urllib.parse import urlsplit, urlunsplit

    try:
        import psycopg
    except ImportError as e:
        _pg_unavailable(f"psycopg is not installed ({e}); pip install 'psycopg[binary]>=3.2'")
    parts = urlsplit(pg_url)
    admin = None
    for dbname in ("postgres", parts.path.lstrip("/")):  # the maintenance db, else the URL's own
        try:
            admin = psycopg.connect(urlunsplit(parts._replace(path="/" + dbname)), autocommit=True)
            break
        except psycopg.OperationalError as e:
            error = e
    if admin is None:
        _pg_unavailable(f"cannot connect to {parts.hostname}:{parts.port}: {error}")
    name = f"t_{uuid.uuid4().hex}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield urlunsplit(parts._replace(path="/" + name))
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pytest_generate_tests(metafunc):
    """A test that uses `store_backend` runs on SQLite and on Postgres, unless marked
    `sqlite_only` (it looks at the SQLite file itself)."""
    if "store_backend" in metafunc.fixturenames:
        only_sqlite = metafunc.definition.get_closest_marker("sqlite_only") is not None
        metafunc.parametrize("store_backend", ["sqlite"] if only_sqlite else ["sqlite", "postgres"], indirect=True)


@pytest.fixture
def store_backend(request, monkeypatch):
    """The backend of every store the test opens by default: SQLite under CVML_HOME, or a
    fresh Postgres database (migrated, as `cvml db upgrade` would) through CVML_DB_URL."""
    if request.param == "postgres":
        from cvml.registry.db import REGISTRY
        from cvml.serve.requestlog import REQUEST_LOG
        from cvml.storage import Database, storage_url

        url = request.getfixturevalue("pg_db_url")
        for schema in (REGISTRY, REQUEST_LOG):
            Database.open(storage_url(url, default_file=Path("unused.db")), schema, migrate=True)
        monkeypatch.setenv("CVML_DB_URL", url)
        yield "postgres"
        Database.dispose(url)
    else:
        monkeypatch.delenv("CVML_DB_URL", raising=False)
        yield "sqlite"


def pytest_collection_modifyitems(config, items):
    """Mark the integration tier (the rule in the module docstring); GPU tests run where CUDA
    is, elsewhere they are skipped with the reason."""
    for item in items:
        module = Path(item.path).stem
        fixtures = set(getattr(item, "fixturenames", ()))
        params = item.callspec.params if hasattr(item, "callspec") else {}
        on_postgres = "postgres" in (params.get("store_backend"), params.get("backend"))
        if (
            INTEGRATION_FIXTURES & fixtures
            or INTEGRATION_MODULE_FIXTURES.get(module, set()) & fixtures
            or module in INTEGRATION_MODULES
            or "slow" in item.keywords
            or on_postgres
        ):
            item.add_marker(pytest.mark.integration)
    if not any("gpu" in item.keywords for item in items):
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (none here)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@dataclass(frozen=True)
class OpenVinoModel:
    """The tiny base exported for OpenVINO GenAI (int8), as `cvml serve --engine openvino` serves it."""

    folder: Path
    tokenizer: object
    context_length: int


@pytest.fixture(scope="session")
def tiny_openvino(tmp_path_factory, loaded) -> OpenVinoModel:
    from cvml.quantize.openvino_format import write_folder

    folder = tmp_path_factory.mktemp("openvino")
    write_folder(loaded.model, loaded.tokenizer, folder, "int8")
    return OpenVinoModel(folder, loaded.tokenizer, loaded.context_length)


@pytest.fixture(scope="module", params=["cvml", "openvino"])
def backend(request, loaded):
    """The tiny model behind either engine: the HTTP suites run once per engine."""
    return loaded if request.param == "cvml" else request.getfixturevalue("tiny_openvino")


def make_engine(backend, **options):
    """A started-later engine on `backend` (a LoadedModel: cvml's engine; an OpenVinoModel: OpenVINO's)."""
    if isinstance(backend, OpenVinoModel):
        from cvml.serve.openvino_engine import OpenVinoEngine

        return OpenVinoEngine(backend.folder, backend.tokenizer, **options)
    from cvml.serve.engine import Engine

    return Engine(backend, **options)
