"""`cvml serve`'s HTTP app on a real uvicorn server, the real engine and the tiny model.

One A/B server (variants a=tiny@1, b=tiny@2, 50/50, API key) serves most tests; the
error paths that need other limits (full queue, deadline, loading, draining, a failing
check, registry watching) get a short-lived server of their own. Clients are httpx and
the official `openai` package.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from cvml.errors import RegistryError
from cvml.modelio import resolve_model
from cvml.recipe import ServeSpec
from cvml.registry import Registry
from cvml.serve.checks import run_checks
from cvml.serve.pool import ServedModel
from cvml.serve.router import Router
from cvml.variants import parse_variants
from cvml.serve.server import BackgroundServer
from conftest import make_engine

KEY = "test-key"
AUTH = {"authorization": f"Bearer {KEY}"}
CHAT = [{"role": "user", "content": "Rewrite this CV bullet to be stronger:\nLed a team of five engineers"}]


# --------------------------------------------------------------------------- fixtures


def shared_opener(loaded, *, max_batch_size=8, max_queue=64, gate: threading.Event | None = None):
    """Opens any version on the already-loaded tiny model (a fresh engine each time); `loaded`
    is a LoadedModel (cvml's engine) or conftest's OpenVinoModel (the openvino engine)."""

    def open_model(variant, ref):
        if gate is not None:
            gate.wait(60)
        engine = make_engine(loaded, max_batch_size=max_batch_size, max_queue=max_queue, batch_wait_ms=1)
        engine.start()
        return ServedModel(variant, ref, loaded.tokenizer, engine, loaded.context_length, release=engine.stop)

    return open_model


@pytest.fixture(scope="module")
def registry(tmp_path_factory, tiny_base) -> Registry:
    """tiny@1 and tiny@2: the same folder registered twice, so versions differ but outputs match."""
    reg = Registry(tmp_path_factory.mktemp("registry") / "registry.db")
    reg.register(tiny_base, "tiny", "base")
    reg.register(tiny_base, "tiny", "base")
    return reg


@pytest.fixture(scope="module")
def ab(tmp_path_factory, backend, registry):
    spec = ServeSpec(
        variants=["a=tiny@1", "b=tiny@2"], split="50/50", experiment="exp1", port=0, max_new_tokens=400,
        log_db=str(tmp_path_factory.mktemp("log") / "requests.db"),
    )
    server = BackgroundServer(
        spec, api_key=KEY, opener=shared_opener(backend), resolver=lambda ref: resolve_model(ref, registry)
    )
    with server:
        yield server


@pytest.fixture
def client(ab):
    with httpx.Client(base_url=ab.url, headers=AUTH, timeout=60) as c:
        yield c


@pytest.fixture
def oai(ab):
    return openai.OpenAI(base_url=f"{ab.url}/v1", api_key=KEY, max_retries=0)


def start_server(
    tmp_path, loaded, registry, *, wait_ready=True, gate=None, engine=None, resolver=None, **spec
) -> BackgroundServer:
    checks = spec.pop("checks", None)
    spec.setdefault("model", "tiny@1")
    serve_spec = ServeSpec(port=0, log_db=str(tmp_path / "requests.db"), **spec)
    server = BackgroundServer(
        serve_spec,
        api_key=KEY,
        opener=shared_opener(loaded, gate=gate, **(engine or {})),
        resolver=resolver or (lambda ref: resolve_model(ref, registry)),
        checks=checks,
    )
    return server.start(wait_ready=wait_ready)


def rewrite(client, user_id=None, max_tokens=4, **body):
    payload = {"text": "Led a team of five engineers", "task": "rewrite_bullet", "max_tokens": max_tokens, **body}
    if user_id is not None:
        payload["user_id"] = user_id
    return client.post("/v1/cv/rewrite", json=payload)


def logged(server, request_id, timeout_s=10.0) -> dict:
    """The request log's row for a request (the writer thread may lag a moment)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        rows = [r for r in server.ctx.request_log.query() if r["request_id"] == request_id]
        if rows:
            return rows[0]
        time.sleep(0.05)
    raise AssertionError(f"request {request_id} was not logged")


def metric(text: str, name: str, **labels) -> float:
    """The value of one sample of a Prometheus exposition (0 when absent)."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


def error_of(response: httpx.Response) -> dict:
    body = response.json()
    assert set(body) == {"error"}
    assert {"message", "type", "param", "code"} <= set(body["error"])
    return body["error"]


# ------------------------------------------------------------------- probes, models


def test_probes_answer_without_a_key_and_say_what_is_served(ab):
    with httpx.Client(base_url=ab.url) as plain:
        health = plain.get("/health")
        ready = plain.get("/ready")
        metrics = plain.get("/metrics")
    assert health.status_code == 200 and health.json()["phase"] == "ready"
    assert ready.status_code == 200
    assert ready.json()["variants"] == {"a": "tiny@1", "b": "tiny@2"}
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
    assert metric(metrics.text, "vllm:num_requests_running", variant="a") == 0
    assert metric(metrics.text, "cvml_model_info", variant="b", version="2") == 1
    assert len(health.headers["x-request-id"]) == 32


def test_models_lists_every_accepted_id_and_what_it_pins(oai):
    cards = {m.id: m for m in oai.models.list()}
    pins = {model_id: card.model_extra["variant"] for model_id, card in cards.items()}
    assert pins == {"a": "a", "b": "b", "tiny@1": "a", "tiny@2": "b", "tiny": None}
    assert cards["b"].model_extra["version"] == 2 and cards["tiny"].model_extra["ref"] is None


# ---------------------------------------------------------------- OpenAI endpoints


def test_chat_stream_with_usage_matches_the_non_streamed_answer(oai):
    whole = oai.chat.completions.with_raw_response.create(model="a", messages=CHAT, max_tokens=12, temperature=0)
    assert whole.headers["x-cvml-variant"] == "a" and whole.headers["x-cvml-model"] == "tiny@1"
    answer = whole.parse()
    usage = answer.usage
    assert answer.model == "tiny@1" and answer.choices[0].message.role == "assistant"
    assert 1 <= usage.completion_tokens <= 12 and usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert answer.choices[0].finish_reason == ("length" if usage.completion_tokens == 12 else "stop")

    chunks = list(
        oai.chat.completions.create(
            model="a", messages=CHAT, max_tokens=12, temperature=0, stream=True, stream_options={"include_usage": True}
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == answer.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [answer.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == usage.completion_tokens
    assert all(c.usage is None for c in chunks[:-1])


def test_ignore_eos_gives_exactly_max_tokens(oai):
    # vLLM's extension fields, as load generators send them: every answer has the asked length.
    for _ in range(3):
        answer = oai.chat.completions.create(
            model="a", messages=CHAT, max_tokens=40, temperature=0, extra_body={"ignore_eos": True, "repetition_penalty": 1.0}
        )
        assert answer.usage.completion_tokens == 40 and answer.choices[0].finish_reason == "length"


def test_completions_take_text_or_token_ids_and_stream(oai, backend):
    prompt = "Managed the budget for"
    text = oai.completions.create(model="b", prompt=prompt, max_tokens=10, temperature=0)
    ids = backend.tokenizer(prompt)["input_ids"]
    by_ids = oai.completions.create(model="b", prompt=ids, max_tokens=10, temperature=0)
    assert text.choices[0].text == by_ids.choices[0].text and text.usage.prompt_tokens == len(ids)
    assert text.usage.completion_tokens == 10 and text.choices[0].finish_reason == "length"
    chunks = list(oai.completions.create(model="b", prompt=prompt, max_tokens=10, temperature=0, stream=True))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == text.choices[0].text
    assert all(c.usage is None for c in chunks)  # no include_usage, no usage chunk


def test_stop_sequence_ends_the_text_before_it(oai):
    full = oai.completions.create(model="a", prompt="Led a team of", max_tokens=12, temperature=0).choices[0].text
    cut_at = full.split()[2]
    stopped = oai.completions.create(model="a", prompt="Led a team of", max_tokens=12, temperature=0, stop=[cut_at])
    assert stopped.choices[0].text == full[: full.index(cut_at)]
    assert stopped.choices[0].finish_reason == "stop"


# ------------------------------------------------------------- the domain endpoint


def test_rewrite_reports_variant_version_and_the_safety_checks(client):
    text, job = "Led a team of 5 engineers at Acme Corp", "Engineering manager, Python"
    response = rewrite(client, "user-1", max_tokens=16, text=text, task="tailor_section", job_description=job,
                       guard="flag")  # the output as generated, whatever the checks find
    assert response.status_code == 200
    body = response.json()
    assert body["request_id"] == response.headers["x-request-id"]
    assert body["variant"] == response.headers["x-cvml-variant"]
    assert (body["model"], body["version"]) == ("tiny", {"a": 1, "b": 2}[body["variant"]])
    assert body["checks"] == run_checks(body["output"], text, job)
    assert body["guard"]["action"] in ("passed", "flagged") and body["guard"]["attempts"] == 1
    assert body["usage"]["completion_tokens"] <= 16


def test_sticky_users_keep_their_variant_and_both_variants_serve(client, oai):
    router = Router(parse_variants(["a=tiny@1", "b=tiny@2"], "50/50"), experiment="exp1")
    seen = {}
    for i in range(24):
        user = f"user-{i}"
        first, second = (rewrite(client, user, max_tokens=1) for _ in range(2))
        assert first.json()["variant"] == second.json()["variant"] == router.assign(user).name
        seen[user] = first.json()["variant"]
    assert set(seen.values()) == {"a", "b"}
    # The OpenAI `user` field routes the same way; a routed id ("tiny") too; a variant id pins.
    for user in ("user-3", "user-4", "user-5"):
        raw = oai.chat.completions.with_raw_response.create(model="tiny", messages=CHAT, max_tokens=1, user=user)
        assert raw.headers["x-cvml-variant"] == seen[user]
        pinned = oai.chat.completions.with_raw_response.create(model="b", messages=CHAT, max_tokens=1, user=user)
        assert pinned.headers["x-cvml-variant"] == "b"
    anonymous = Counter(rewrite(client, max_tokens=1).json()["variant"] for _ in range(12))
    assert sum(anonymous.values()) == 12


def test_split_ratio_holds_over_many_users():
    router = Router(parse_variants(["a=x", "b=y"], "90/10"), experiment="exp1")
    counts = Counter(router.assign(f"user-{i}").name for i in range(20_000))
    # binomial sd of the share is 0.0021 here: 0.01 is almost 5 sd
    assert abs(counts["b"] / 20_000 - 0.10) < 0.01


def test_feedback_is_stored_and_unknown_ids_are_404(ab, client):
    request_id = rewrite(client, "user-fb").json()["request_id"]
    ok = client.post("/v1/feedback", json={"request_id": request_id, "accepted": True, "rating": 4})
    assert ok.status_code == 200 and ok.json() == {"request_id": request_id, "recorded": True}
    row = logged(ab, request_id)
    assert (row["accepted"], row["rating"]) == (True, 4.0)
    missing = client.post("/v1/feedback", json={"request_id": "nope", "accepted": False})
    assert missing.status_code == 404 and error_of(missing)["param"] == "request_id"
    assert client.post("/v1/feedback", json={"request_id": request_id}).status_code == 400


# --------------------------------------------------------------------- request log


def test_every_request_is_logged_with_engine_figures(ab, client, oai):
    chat = oai.chat.completions.with_raw_response.create(model="a", messages=CHAT, max_tokens=6, user="user-log")
    answer = chat.parse()
    row = logged(ab, chat.headers["x-request-id"])
    assert row["endpoint"] == "/v1/chat/completions" and row["status"] == 200
    assert (row["variant"], row["model_ref"], row["model_version"]) == ("a", "tiny@1", "tiny@1")
    assert row["experiment"] == "exp1"
    assert row["prompt_tokens"] == answer.usage.prompt_tokens
    assert row["completion_tokens"] == answer.usage.completion_tokens
    assert 0 < row["ttft_s"] <= row["e2e_s"] and row["finish_reason"] == answer.choices[0].finish_reason
    assert row["user_key"] not in (None, "user-log")

    body = rewrite(client, "user-log", max_tokens=8).json()
    row = logged(ab, body["request_id"])
    assert (row["task"], row["output_text"] is not None) == ("rewrite_bullet", True)
    assert row["pii_leak"] == body["checks"]["pii_leak"]["flagged"]
    assert row["fabrication"] == body["checks"]["fabrication"]["flagged"]
    # ... and the sizes of the inputs, which the monitor splits the logged text by
    inputs = {"text_chars": len("Led a team of five engineers"), "text_lines": 0, "job_description_chars": 0}
    assert row["checks"] == {**body["checks"], "guard": body["guard"], "inputs": inputs}


def test_log_stores_redacted_text_only(ab, client):
    email = "jane.doe.unique@example.com"
    body = rewrite(client, "user-pii", text=f"Led a team of five; contact {email}").json()
    row = logged(ab, body["request_id"])
    assert "<EMAIL_1>" in row["input_text"] and email not in row["input_text"]
    ab.ctx.request_log.flush()
    for file in Path(ab.ctx.request_log.path).parent.glob("requests.db*"):
        assert email.encode() not in file.read_bytes(), file
    # Erasure: the user's rows go, nobody else's.
    others = len([r for r in ab.ctx.request_log.query() if r["request_id"] != body["request_id"]])
    assert ab.ctx.request_log.forget("user-pii") == 1
    assert len(ab.ctx.request_log.query()) == others


def test_log_text_none_keeps_figures_but_no_text(tmp_path, backend, registry):
    server = start_server(tmp_path, backend, registry, log_text="none")
    try:
        response = rewrite(httpx.Client(base_url=server.url, headers=AUTH), "user-x", text="Mail me at a.b@example.com")
        row = logged(server, response.json()["request_id"])
        assert (row["input_text"], row["output_text"], row["status"]) == (None, None, 200)
        assert row["completion_tokens"] == response.json()["usage"]["completion_tokens"]
    finally:
        server.stop()


def test_client_disconnect_cancels_the_generation(ab):
    with httpx.Client(base_url=ab.url, headers=AUTH, timeout=60) as c:
        body = {"model": "a", "prompt": "Led a team of", "max_tokens": 400, "temperature": 0, "stream": True}
        with c.stream("POST", "/v1/completions", json=body) as response:
            request_id = response.headers["x-request-id"]
            lines = response.iter_lines()
            assert next(lines).startswith("data: ")
    row = logged(ab, request_id)
    assert (row["status"], row["finish_reason"]) == (499, "cancelled")
    assert row["completion_tokens"] < 400
    deadline = time.monotonic() + 5
    while ab.ctx.pool.current["a"].engine.num_running and time.monotonic() < deadline:
        time.sleep(0.02)
    assert ab.ctx.pool.current["a"].engine.num_running == 0


def test_metrics_count_what_was_served(ab, oai):
    before = httpx.get(f"{ab.url}/metrics").text
    usages = [
        oai.chat.completions.create(model="b", messages=CHAT, max_tokens=n, temperature=0).usage.completion_tokens
        for n in (2, 3, 4)
    ]
    after = httpx.get(f"{ab.url}/metrics").text
    labels = {"variant": "b", "model_name": "tiny@2"}

    def grew(name, **by):
        return metric(after, name, **by) - metric(before, name, **by)

    assert grew("vllm:e2e_request_latency_seconds_count", **labels) == 3
    assert grew("vllm:time_to_first_token_seconds_count", **labels) == 3
    assert grew("vllm:generation_tokens_total", **labels) == sum(usages)
    assert grew("vllm:inter_token_latency_seconds_count", **labels) == sum(n - 1 for n in usages)
    assert grew("cvml_http_requests_total", route="/v1/chat/completions", status="200") == 3


def test_reload_with_unchanged_versions_reloads_nothing(ab, client):
    assert httpx.post(f"{ab.url}/admin/reload").status_code == 401
    outcomes = client.post("/admin/reload").json()["variants"]
    assert [(o["variant"], o["outcome"], o["current"]) for o in outcomes] == [
        ("a", "unchanged", "tiny@1"), ("b", "unchanged", "tiny@2"),
    ]


# --------------------------------------------------------------------------- errors


def test_missing_or_wrong_key_is_401(ab):
    for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": KEY}):
        response = httpx.post(f"{ab.url}/v1/cv/rewrite", json={"text": "x", "task": "summary"}, headers=headers)
        assert response.status_code == 401 and error_of(response)["code"] == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{ab.url}/v1", api_key="wrong", max_retries=0).models.list()


BAD_INPUT = [
    ("/v1/chat/completions", {"messages": CHAT, "temperature": 3}, "temperature"),
    ("/v1/chat/completions", {"messages": []}, "messages"),
    ("/v1/chat/completions", {"messages": [{"role": "robot", "content": "x"}]}, "messages.0.role"),
    ("/v1/chat/completions", {"messages": CHAT, "n": 2}, "n"),
    ("/v1/chat/completions", {"messages": CHAT, "stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ("/v1/chat/completions", {"messages": CHAT, "max_tokens": 0}, "max_tokens"),
    ("/v1/chat/completions", {"messages": CHAT, "seed": -1}, "seed"),
    ("/v1/completions", {"max_tokens": 3}, "prompt"),
    ("/v1/completions", {"prompt": []}, "prompt"),
    ("/v1/completions", {"prompt": [10**9]}, "prompt"),
    ("/v1/cv/rewrite", {"text": "x", "task": "poem"}, "task"),
    ("/v1/cv/rewrite", {"text": "", "task": "summary"}, "text"),
    ("/v1/cv/rewrite", {"text": "x", "txt": "x", "task": "summary"}, "txt"),
    ("/v1/cv/rewrite", {"text": "x", "task": "tailor_section"}, "job_description"),
    ("/v1/feedback", {"request_id": "r", "rating": 0}, "rating"),
]


@pytest.mark.parametrize(("path", "body", "param"), BAD_INPUT)
def test_bad_input_is_400_naming_the_field(client, path, body, param):
    response = client.post(path, json=body)
    assert response.status_code == 400, response.text
    error = error_of(response)
    assert (error["type"], error["param"]) == ("invalid_request_error", param)


def test_malformed_bodies_are_400_not_500(client):
    for content in (b"{not json", b"[1, 2]", b"", '{"text": "\\ud800", "task": "summary"}'.encode()):
        response = client.post("/v1/cv/rewrite", content=content, headers={"content-type": "application/json"})
        assert response.status_code == 400, (content, response.text)
    invalid = client.post("/v1/cv/rewrite", content=b"{x", headers={"content-type": "application/json"})
    assert error_of(invalid)["message"] == "the body is not valid JSON"


def test_unknown_routes_and_methods_keep_the_envelope(client):
    assert client.get("/v1/nothing").status_code == 404 and error_of(client.get("/v1/nothing"))["type"]
    wrong = client.get("/v1/chat/completions")
    assert wrong.status_code == 405 and error_of(wrong)["type"] == "invalid_request_error"


def test_unknown_model_is_404_naming_the_served_ids(oai):
    with pytest.raises(openai.NotFoundError) as info:
        oai.chat.completions.create(model="gpt-4o", messages=CHAT, max_tokens=2)
    error = info.value.body
    assert (error["param"], error["code"]) == ("model", "model_not_found")
    assert "tiny@1" in error["message"]


def test_prompt_over_the_context_is_400_in_openai_words(client):
    """OpenAI's status, code and message, which clients parse to fall back to a larger model."""
    response = rewrite(client, text="managed budgets " * 600)
    error = error_of(response)
    assert response.status_code == 400 and (error["code"], error["param"]) == ("context_length_exceeded", "text")
    assert error["message"].startswith("This model's maximum context length is 512 tokens. However, you requested")
    assert response.headers["x-cvml-variant"] in ("a", "b")


def test_queue_full_is_429_with_retry_after(tmp_path, backend, registry):
    server = start_server(tmp_path, backend, registry, engine={"max_queue": 0})
    try:
        response = httpx.post(f"{server.url}/v1/cv/rewrite", json={"text": "x", "task": "summary"}, headers=AUTH)
        assert response.status_code == 429 and response.headers["retry-after"] == "1"
        assert error_of(response)["code"] == "queue_full"
        assert logged(server, response.headers["x-request-id"])["status"] == 429
    finally:
        server.stop()


def test_past_the_deadline_is_504_and_ends_a_stream_with_an_error(tmp_path, backend, registry):
    server = start_server(tmp_path, backend, registry, request_timeout_s=1e-6)
    try:
        response = httpx.post(f"{server.url}/v1/cv/rewrite", json={"text": "x", "task": "summary"}, headers=AUTH)
        assert response.status_code == 504 and error_of(response)["code"] == "deadline_exceeded"
        oai = openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0)
        with pytest.raises(openai.APIError, match="deadline"):
            list(oai.chat.completions.create(model="default", messages=CHAT, max_tokens=4, stream=True))
    finally:
        server.stop()


def test_loading_is_503_until_the_model_is_in(tmp_path, backend, registry):
    gate = threading.Event()
    server = start_server(tmp_path, backend, registry, wait_ready=False, gate=gate)
    try:
        assert httpx.get(f"{server.url}/health").json()["phase"] == "loading"
        not_ready = httpx.get(f"{server.url}/ready")
        assert not_ready.status_code == 503 and error_of(not_ready)["code"] == "loading"
        refused = httpx.post(f"{server.url}/v1/cv/rewrite", json={"text": "x", "task": "summary"}, headers=AUTH)
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        gate.set()
        deadline = time.monotonic() + 60
        while httpx.get(f"{server.url}/ready").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert rewrite(httpx.Client(base_url=server.url, headers=AUTH)).status_code == 200
    finally:
        gate.set()
        server.stop()


def test_draining_refuses_new_requests_but_stays_alive(tmp_path, backend, registry):
    server = start_server(tmp_path, backend, registry)
    try:
        server.ctx.begin_drain()
        assert httpx.get(f"{server.url}/health").status_code == 200
        assert error_of(httpx.get(f"{server.url}/ready"))["code"] == "draining"
        refused = httpx.post(f"{server.url}/v1/cv/rewrite", json={"text": "x", "task": "summary"}, headers=AUTH)
        assert refused.status_code == 503 and error_of(refused)["code"] == "draining"
    finally:
        server.stop()


def test_an_unexpected_failure_is_a_500_envelope_with_the_request_id(tmp_path, backend, registry):
    def broken_checks(output, source, job):
        raise RuntimeError("checker crashed")

    server = start_server(tmp_path, backend, registry, checks=broken_checks)
    try:
        body = {"text": "x", "task": "summary", "max_tokens": 2}
        response = httpx.post(f"{server.url}/v1/cv/rewrite", json=body, headers=AUTH)
        error = error_of(response)
        request_id = response.headers["x-request-id"]
        assert response.status_code == 500 and error["request_id"] == request_id and request_id in error["message"]
        assert "checker crashed" not in error["message"]  # internals stay in the server log
        assert logged(server, request_id)["status"] == 500
    finally:
        server.stop()


def test_watching_the_registry_swaps_in_a_promotion(tmp_path, backend, registry):
    registry.promote("tiny@1", "prod")
    server = start_server(tmp_path, backend, registry, model="tiny@prod", watch_registry_s=0.2)
    try:
        client = httpx.Client(base_url=server.url, headers=AUTH, timeout=30)
        assert rewrite(client).json()["version"] == 1
        registry.promote("tiny@2", "prod")
        deadline = time.monotonic() + 30
        while rewrite(client).json()["version"] != 2:
            assert time.monotonic() < deadline, "the promotion was not picked up"
            time.sleep(0.1)
        metrics = httpx.get(f"{server.url}/metrics").text
        assert metric(metrics, "cvml_model_reloads_total", variant="default", outcome="swapped") == 1
        assert metric(metrics, "cvml_model_info", variant="default", version="2") == 1
        assert metric(metrics, "cvml_model_info", variant="default", version="1") == 0
    finally:
        registry.rollback("tiny", "prod")
        server.stop()


def test_a_failed_reload_is_409_and_the_variant_keeps_serving(tmp_path, backend, registry):
    calls = []

    def registry_that_goes_away(ref):
        calls.append(ref)
        if len(calls) > 1:
            raise RegistryError("the registry database is gone")
        return resolve_model(ref, registry)

    server = start_server(tmp_path, backend, registry, resolver=registry_that_goes_away)
    try:
        client = httpx.Client(base_url=server.url, headers=AUTH, timeout=30)
        failed = client.post("/admin/reload")
        error = failed.json()["error"]
        assert failed.status_code == 409 and error["code"] == "reload_failed"
        assert "the registry database is gone" in error["message"]
        [outcome] = failed.json()["variants"]  # every variant's outcome beside the error
        assert (outcome["variant"], outcome["outcome"], outcome["current"]) == ("default", "failed", "tiny@1")
        assert rewrite(client).json()["version"] == 1
    finally:
        server.stop()
