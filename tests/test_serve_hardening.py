"""`cvml serve` hardening: bodies limited by the bytes received, bounded rewrite checks,
auth that fails closed, no filesystem paths in answers, a registry watch and reload that
survive unexpected errors, and non-streamed requests aborted when their client leaves.

Most tests run the real app on the tiny model (uvicorn on a thread, or Starlette's
TestClient where the client's address matters); the body-limit memory test runs a real
`cvml serve` process.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest
from serve_process import ServeProcess
from starlette.testclient import TestClient

from cvml.errors import ConfigError, CvmlError
from cvml.modelio import ModelRef, resolve_model
from cvml.recipe import ServeSpec
from cvml.registry import Registry
from cvml.serve import openai_schema as schema
from cvml.serve.app import MAX_BODY_BYTES, create_app
from cvml.serve.checks import run_checks
from cvml.serve.context import AppSettings, ServeContext
from cvml.serve.engine import Engine
from cvml.serve.pool import ModelPool, ServedModel
from cvml.serve.server import BackgroundServer
from cvml.variants import parse_variants

KEY = "api-key"
ADMIN = "admin-key"
AUTH = {"authorization": f"Bearer {KEY}"}
CHAT = [{"role": "user", "content": "Rewrite this CV bullet to be stronger:\nLed a team of five engineers"}]


class SlowEngine(Engine):
    """The real engine, slowed to ~25 decode steps a second so a generation is long enough
    for a client to leave in the middle of it."""

    def _decode(self) -> None:
        time.sleep(0.04)
        super()._decode()


def opener(loaded, engine_cls=Engine):
    def open_model(variant, ref):
        engine = engine_cls(loaded, max_batch_size=4, max_queue=16, batch_wait_ms=1)
        engine.start()
        return ServedModel(variant, ref, loaded.tokenizer, engine, loaded.context_length, release=engine.stop)

    return open_model


@pytest.fixture(scope="module")
def registry(tmp_path_factory, tiny_base) -> Registry:
    reg = Registry(tmp_path_factory.mktemp("registry") / "registry.db")
    reg.register(tiny_base, "tiny", "base")
    reg.register(tiny_base, "tiny", "base")
    return reg


def start(tmp_path, loaded, registry, *, resolver=None, engine_cls=Engine, api_key=KEY, **spec) -> BackgroundServer:
    checks = spec.pop("checks", None)
    spec.setdefault("model", "tiny@1")
    server = BackgroundServer(
        ServeSpec(port=0, log_db=str(tmp_path / "requests.db"), **spec),
        api_key=api_key,
        opener=opener(loaded, engine_cls),
        resolver=resolver or (lambda ref: resolve_model(ref, registry)),
        checks=checks,
    )
    return server.start()


def logged(server, request_id, timeout_s=10.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        rows = [r for r in server.ctx.request_log.query() if r["request_id"] == request_id]
        if rows:
            return rows[0]
        time.sleep(0.05)
    raise AssertionError(f"request {request_id} was not logged")


def bare_context(api_key: str | None = None) -> ServeContext:
    """A context whose pool never loads: enough for what is decided before a model is picked."""
    pool = ModelPool(parse_variants(["default=tiny@1"], None), lambda variant, ref: None, resolver=lambda ref: None)
    return ServeContext(pool, AppSettings(api_key=api_key))


# ------------------------------------------------------------- 1. body and text limits


def test_a_chunked_50mb_body_is_413_with_the_server_memory_barely_moving(tmp_path, tiny_base):
    server = ServeProcess([str(tiny_base), "--log-db", str(tmp_path / "requests.db")], tmp_path / "home")
    try:
        process = psutil.Process(server.info["pid"])
        httpx.get(f"{server.url}/health")
        before = process.memory_info().rss
        peak, done = [before], threading.Event()

        def sample() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], process.memory_info().rss)
                time.sleep(0.005)

        def body():  # a generator: httpx sends it chunked, with no Content-Length
            yield b'{"task": "summary", "text": "'
            chunk = b"managed budgets " * 65536  # 1 MiB
            for _ in range(50):
                yield chunk
            yield b'"}'

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            response = httpx.post(
                f"{server.url}/v1/cv/rewrite", content=body(), headers={"content-type": "application/json"},
                timeout=120,
            )
        finally:
            done.set()
            sampler.join(5)
        peak[0] = max(peak[0], process.memory_info().rss)
        assert response.status_code == 413, response.text
        assert response.json()["error"]["code"] == "body_too_large"
        assert peak[0] - before < 100 * 2**20, f"the server grew by {(peak[0] - before) / 2**20:.0f} MiB"
        assert httpx.get(f"{server.url}/health").status_code == 200
    finally:
        assert server.stop() == 0


def test_the_body_limit_counts_the_bytes_received_and_stops_reading_at_it():
    app = create_app(bare_context())
    chunk = b"x" * 65536
    received = 0
    sent: list[dict] = []

    async def receive():
        nonlocal received
        received += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": received < 50 * 2**20}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": "/v1/cv/rewrite", "raw_path": b"/v1/cv/rewrite", "root_path": "", "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"transfer-encoding", b"chunked")],
        "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000),
    }
    asyncio.run(app(scope, receive, send))
    start_message = next(m for m in sent if m["type"] == "http.response.start")
    assert start_message["status"] == 413
    assert received <= MAX_BODY_BYTES + len(chunk), f"read {received} bytes past a limit of {MAX_BODY_BYTES}"
    body = json.loads(b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body"))
    assert body["error"]["code"] == "body_too_large"


def test_content_parts_and_characters_per_request_are_capped():
    client = TestClient(create_app(bare_context()), raise_server_exceptions=False)
    parts = [{"type": "text", "text": "x"}] * (schema.MAX_CONTENT_PARTS + 1)
    response = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": parts}]})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "messages.0.content"

    share = schema.MAX_REQUEST_CHARS // 4 + 1  # every message is within its own cap; together they are not
    many = [{"role": "user", "content": "y" * share} for _ in range(4)]
    response = client.post("/v1/chat/completions", json={"messages": many})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "messages"
    split_parts = [{"type": "text", "text": "z" * share} for _ in range(4)]
    response = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": split_parts}]})
    assert response.status_code == 400 and response.json()["error"]["param"] == "messages"


def test_a_rewrite_over_the_checked_size_is_refused_before_generation(tmp_path, loaded, registry):
    calls = []
    server = start(tmp_path, loaded, registry, checks=lambda *args: calls.append(args))
    try:
        text = "Led a team of five engineers. " * (schema.MAX_REWRITE_CHARS // 30 + 1)
        response = httpx.post(
            f"{server.url}/v1/cv/rewrite", json={"text": text, "task": "summary"}, headers=AUTH, timeout=60
        )
        error = response.json()["error"]
        assert response.status_code == 413 and (error["code"], error["param"]) == ("text_too_long", "text")
        assert str(schema.MAX_REWRITE_CHARS) in error["message"]
        assert server.ctx.pool.current["default"].engine.num_waiting == 0 and not calls
    finally:
        server.stop()


def test_rewrite_checks_are_bounded_by_the_request_deadline(tmp_path, loaded, registry):
    def slow_checks(output, source, job):
        time.sleep(6)  # what a pathological text costs the real checks
        return run_checks(output, source, job)

    server = start(tmp_path, loaded, registry, checks=slow_checks, request_timeout_s=1.5)
    try:
        began = time.monotonic()
        response = httpx.post(
            f"{server.url}/v1/cv/rewrite", json={"text": "Led a team", "task": "summary", "max_tokens": 2},
            headers=AUTH, timeout=60,
        )
        took = time.monotonic() - began
        assert response.status_code == 504, response.text
        assert response.json()["error"]["code"] == "deadline_exceeded" and took < 4, took
        assert logged(server, response.headers["x-request-id"])["status"] == 504
    finally:
        server.stop()


# ------------------------------------------------------------------------- 2. auth


def test_binding_off_loopback_without_an_api_key_is_refused(tmp_path, loaded, registry):
    spec = ServeSpec(model="tiny@1", host="0.0.0.0", port=0, log_db=str(tmp_path / "requests.db"))

    def resolver(ref):
        return resolve_model(ref, registry)

    with pytest.raises(ConfigError) as info:
        BackgroundServer(spec, opener=opener(loaded), resolver=resolver)
    assert "0.0.0.0" in info.value.message and "--api-key" in info.value.hint
    with BackgroundServer(spec, api_key=KEY, opener=opener(loaded), resolver=resolver) as exposed:
        assert httpx.get(f"{exposed.url}/v1/models").status_code == 401


def test_an_empty_api_key_is_an_error_not_no_auth(tmp_path, loaded, registry, runner, monkeypatch):
    spec = ServeSpec(model="tiny@1", port=0, log_db=str(tmp_path / "requests.db"))
    with pytest.raises(ConfigError, match="empty"):
        BackgroundServer(spec, api_key="", opener=opener(loaded), resolver=lambda ref: resolve_model(ref, registry))

    from cvml.cli.main import app

    called = []
    monkeypatch.setattr("cvml.serve.server.serve", lambda *args, **kwargs: called.append(kwargs))
    monkeypatch.setenv("CVML_API_KEY", "")
    result = runner.invoke(app, ["serve", "tiny@1", "--port", "0"])
    assert result.exit_code == 2 and "CVML_API_KEY" in result.stderr and not called
    monkeypatch.delenv("CVML_API_KEY")
    monkeypatch.setenv("CVML_ADMIN_KEY", "")
    result = runner.invoke(app, ["serve", "tiny@1", "--port", "0", "--api-key", KEY])
    assert result.exit_code == 2 and "CVML_ADMIN_KEY" in result.stderr and not called


def test_the_cli_passes_the_admin_key_and_docs_and_refuses_an_exposed_host_first(runner, monkeypatch):
    from cvml.cli.main import app

    exposed = runner.invoke(app, ["serve", "nosuch@prod", "--host", "0.0.0.0", "--port", "0"])
    assert exposed.exit_code == 2 and "off loopback" in exposed.stderr and "--api-key" in exposed.stderr

    calls = []
    monkeypatch.setattr("cvml.serve.server.serve", lambda spec, **kwargs: calls.append((spec, kwargs)))
    monkeypatch.setenv("CVML_ADMIN_KEY", ADMIN)
    result = runner.invoke(app, ["serve", "tiny@1", "--api-key", KEY, "--docs"])
    assert result.exit_code == 0, result.stderr
    spec, keys = calls[0]
    assert spec.docs and (keys["api_key"], keys["admin_key"]) == (KEY, ADMIN)
    assert runner.invoke(app, ["serve", "tiny@1"]).exit_code == 0 and calls[1][0].docs is False


def _loaded_app(loaded, registry, **app_options):
    pool = ModelPool(
        parse_variants(["default=tiny@1"], None), opener(loaded), resolver=lambda ref: resolve_model(ref, registry)
    )
    return create_app(ServeContext(pool, AppSettings(api_key=KEY)), **app_options)


def _when_ready(client: TestClient) -> TestClient:
    deadline = time.monotonic() + 60
    while client.get("/ready").status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return client


def test_admin_takes_the_admin_key_only_and_the_api_key_does_not_open_it(loaded, registry):
    admin = {"authorization": f"Bearer {ADMIN}"}
    with TestClient(_loaded_app(loaded, registry, admin_key=ADMIN), client=("203.0.113.7", 4000)) as client:
        _when_ready(client)
        refused = client.post("/admin/reload", headers=AUTH)
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_admin_key"
        assert client.post("/admin/reload").status_code == 401
        ok = client.post("/admin/reload", headers=admin)
        assert ok.status_code == 200 and ok.json()["variants"][0]["outcome"] == "unchanged"
        assert client.get("/v1/models", headers=admin).status_code == 401  # nor does the admin key open /v1
        assert client.get("/v1/models", headers=AUTH).status_code == 200


def test_without_an_admin_key_admin_answers_loopback_clients_only(loaded, registry):
    app = _loaded_app(loaded, registry)
    with TestClient(app, client=("203.0.113.7", 4000)) as remote:
        _when_ready(remote)
        refused = remote.post("/admin/reload", headers=AUTH)
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "admin_disabled"
        assert "--admin-key" in refused.json()["error"]["message"]
    with TestClient(_loaded_app(loaded, registry), client=("127.0.0.1", 4000)) as local:
        _when_ready(local)
        assert local.post("/admin/reload").status_code == 401  # the API key is still needed
        assert local.post("/admin/reload", headers=AUTH).status_code == 200


def test_docs_and_openapi_are_off_unless_asked_for():
    closed = TestClient(create_app(bare_context()))
    assert closed.get("/docs").status_code == 404 and closed.get("/openapi.json").status_code == 404
    assert closed.get("/redoc").status_code == 404
    opened = TestClient(create_app(bare_context(), docs=True))
    assert opened.get("/docs").status_code == 200
    assert "/v1/cv/rewrite" in opened.get("/openapi.json").json()["paths"]


def test_models_and_errors_never_show_filesystem_paths(tmp_path, loaded, tiny_base):
    folder = str(tiny_base)

    def failing_checks(output, source, job):
        raise CvmlError(f"cannot read {tmp_path}/secret/lexicon.txt", hint=f"restore {folder}/lexicon.txt")

    server = start(tmp_path, loaded, None, model=folder, resolver=resolve_model, checks=failing_checks)
    try:
        client = httpx.Client(base_url=server.url, headers=AUTH, timeout=60)
        cards = client.get("/v1/models").json()["data"]
        shown = {card["id"] for card in cards} | {card["ref"] for card in cards if card["ref"]}
        assert shown == {"default", tiny_base.name}
        missing = client.post("/v1/chat/completions", json={"model": "gpt-4o", "messages": CHAT, "max_tokens": 2})
        assert missing.status_code == 404 and tiny_base.name in missing.json()["error"]["message"]
        answer = client.post("/v1/chat/completions", json={"messages": CHAT, "max_tokens": 2})
        assert answer.json()["model"] == tiny_base.name and answer.headers["x-cvml-model"] == tiny_base.name
        by_path = client.post("/v1/chat/completions", json={"model": folder, "messages": CHAT, "max_tokens": 2})
        assert by_path.status_code == 200  # still accepted, just never shown
        failed = client.post("/v1/cv/rewrite", json={"text": "Led a team", "task": "summary", "max_tokens": 2})
        assert failed.status_code == 500 and "lexicon.txt" in failed.json()["error"]["message"]
        for response in (missing, answer, failed):
            assert folder not in response.text and str(tmp_path) not in response.text, response.text
    finally:
        server.stop()


# ------------------------------------------------------------- 4. watch and reload


def test_the_registry_watch_survives_an_unexpected_error_and_retries(tmp_path, loaded, registry):
    registry.promote("tiny@1", "prod")
    calls = []

    def flaky(ref):
        calls.append(ref)
        if len(calls) in (2, 3):  # the initial resolve works; the watch's first two polls crash
            raise RuntimeError("database disk image is malformed")
        return resolve_model(ref, registry)

    server = start(tmp_path, loaded, registry, model="tiny@prod", resolver=flaky, watch_registry_s=0.2)
    try:
        registry.promote("tiny@2", "prod")
        deadline = time.monotonic() + 20
        while server.ctx.pool.current["default"].model_ref.version != 2:
            assert time.monotonic() < deadline, f"no swap after the errors ({len(calls)} polls)"
            time.sleep(0.1)
        assert server.ctx.pool.watch_errors == 2
        assert "database disk image is malformed" in server.ctx.pool.last_watch_error
    finally:
        registry.rollback("tiny", "prod")
        server.stop()


def test_the_watch_loop_survives_an_error_outside_the_reload_itself():
    ref = ModelRef(path=Path("/models/m"), name="m", version=1, ref="m@1", kind="full")

    def open_model(variant, ref):
        return ServedModel(variant, ref, tokenizer=None, engine=None, context_length=512, release=lambda: None)

    async def scenario() -> tuple[ModelPool, int]:
        pool = ModelPool(parse_variants(["default=m@1"], None), open_model, resolver=lambda r: ref)
        await pool.load()
        polls = []

        def on_reload(outcomes):  # e.g. the metrics update after a poll
            polls.append(outcomes)
            if len(polls) == 1:
                raise RuntimeError("label cardinality exceeded")

        watch = asyncio.create_task(pool.watch(0.01, on_reload))
        try:
            for _ in range(300):
                if len(polls) >= 3 or watch.done():
                    break
                await asyncio.sleep(0.01)
        finally:
            watch.cancel()
        return pool, len(polls)

    pool, polls = asyncio.run(scenario())
    assert polls >= 3, "the watch stopped after the first error"
    assert pool.watch_errors == 1 and pool.last_watch_error == "RuntimeError: label cardinality exceeded"


def test_reload_reports_every_variant_when_one_fails_unexpectedly(tmp_path, loaded, registry):
    broken = threading.Event()

    def resolver(ref):
        if broken.is_set() and ref == "tiny@1":
            raise OSError(f"[Errno 5] Input/output error: '{tmp_path}/registry.db'")
        return resolve_model(ref, registry)

    server = start(tmp_path, loaded, registry, model=None, variants=["a=tiny@1", "b=tiny@2"], split="50/50",
                   resolver=resolver)
    try:
        broken.set()
        response = httpx.post(f"{server.url}/admin/reload", headers=AUTH, timeout=60)
        assert response.status_code == 409, response.text
        body = response.json()
        assert body["error"]["code"] == "reload_failed" and str(tmp_path) not in response.text
        outcomes = {o["variant"]: o for o in body["variants"]}
        assert (outcomes["a"]["outcome"], outcomes["b"]["outcome"]) == ("failed", "unchanged")
        assert "Input/output error" in outcomes["a"]["error"] and outcomes["a"]["current"] == "tiny@1"
        ok = httpx.post(f"{server.url}/v1/cv/rewrite", json={"text": "Led", "task": "summary", "model": "a",
                                                              "max_tokens": 2}, headers=AUTH, timeout=60)
        assert ok.status_code == 200
    finally:
        server.stop()


# ------------------------------------------------------ 5. abandoned non-streamed requests


def test_a_non_streamed_request_is_aborted_when_its_client_leaves(tmp_path, loaded, registry):
    server = start(tmp_path, loaded, registry, engine_cls=SlowEngine, max_new_tokens=400)
    try:
        engine = server.ctx.pool.current["default"].engine
        body = {"messages": CHAT, "max_tokens": 300, "ignore_eos": True, "temperature": 0}
        with pytest.raises(httpx.ReadTimeout):
            timeout = httpx.Timeout(60, read=1.5)  # the client gives up mid-generation
            httpx.post(f"{server.url}/v1/chat/completions", json=body, headers=AUTH, timeout=timeout)
        left = time.monotonic()
        while engine.num_running + engine.num_waiting and time.monotonic() - left < 5:
            time.sleep(0.02)
        assert engine.num_running + engine.num_waiting == 0, "still generating for a client that left"
        rows = [r for r in server.ctx.request_log.query() if r["endpoint"] == "/v1/chat/completions"]
        deadline = time.monotonic() + 5
        while not rows and time.monotonic() < deadline:
            time.sleep(0.05)
            rows = [r for r in server.ctx.request_log.query() if r["endpoint"] == "/v1/chat/completions"]
        assert len(rows) == 1 and (rows[0]["status"], rows[0]["finish_reason"]) == (499, "cancelled")
        assert rows[0]["completion_tokens"] < 300  # figures as of the abort
        assert server.ctx.inflight == 0
    finally:
        server.stop()
