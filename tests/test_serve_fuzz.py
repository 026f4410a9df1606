"""No input gets a 500: schemathesis against the app's own OpenAPI schema (valid and invalid
requests), and hypothesis-made JSON of any shape, sent to a real server on the tiny model."""

from __future__ import annotations

import json

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cvml.recipe import ServeSpec
from cvml.serve.server import BackgroundServer

KEY = "fuzz-key"
AUTH = {"authorization": f"Bearer {KEY}"}
POSTS = ["/v1/chat/completions", "/v1/completions", "/v1/cv/rewrite", "/v1/feedback"]
GETS = ["/v1/models", "/health", "/ready"]
# Few examples per operation: the point is breadth, and the whole file stays well under a minute.
FUZZ = settings(
    max_examples=15, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck)
)


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_base):
    spec = ServeSpec(
        model=str(tiny_base), port=0, max_new_tokens=4, device="cpu", docs=True,  # the schema is fuzzed
        log_db=str(tmp_path_factory.mktemp("fuzz") / "requests.db"),
    )
    with BackgroundServer(spec, api_key=KEY) as running:
        yield running


@pytest.fixture(scope="module")
def schema(server):
    return schemathesis.openapi.from_url(f"{server.url}/openapi.json")


def _assert_no_server_error(response, sent) -> None:
    assert response.status_code < 500, f"{sent!r} -> {response.status_code} {response.text[:500]}"
    if response.status_code >= 400:
        assert set(response.json()) == {"error"}, response.text


@pytest.mark.parametrize(
    ("method", "path", "mode"),
    [("POST", p, m) for p in POSTS for m in ("positive", "negative")] + [("GET", p, "positive") for p in GETS],
)
def test_schema_generated_requests_never_get_a_500(server, schema, method, path, mode):
    strategy = schema[path][method].as_strategy(generation_mode=schemathesis.GenerationMode(mode))

    @FUZZ
    @given(case=strategy)
    def check(case):
        _assert_no_server_error(case.call(base_url=server.url, headers=AUTH, timeout=60), case.body)

    check()


_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=40)
_json = st.recursive(
    _scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
_FIELDS = [
    "messages", "model", "max_tokens", "max_completion_tokens", "temperature", "top_p", "n", "stop", "seed",
    "stream", "stream_options", "user", "prompt", "text", "task", "job_description", "user_id", "request_id",
    "accepted", "rating",
]
_messages = st.lists(
    st.fixed_dictionaries({"role": st.sampled_from(["system", "user", "assistant", "tool", ""]), "content": _json}),
    max_size=3,
)
_bodies = st.dictionaries(st.sampled_from(_FIELDS), _json, max_size=6) | st.fixed_dictionaries(
    {"messages": _messages, "text": st.text(max_size=60), "task": st.sampled_from(["summary", "tailor_section", "x"])},
    optional={"stream": st.booleans(), "max_tokens": st.integers(), "prompt": _json, "stop": _json},
)


@settings(max_examples=60, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(path=st.sampled_from(POSTS), body=_bodies)
def test_json_of_any_shape_never_gets_a_500(server, path, body):
    content = json.dumps(body, allow_nan=True).encode()
    response = httpx.post(
        f"{server.url}{path}", content=content, headers={**AUTH, "content-type": "application/json"}, timeout=60
    )
    _assert_no_server_error(response, body)


@settings(max_examples=20, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(path=st.sampled_from(POSTS), content=st.binary(max_size=200))
def test_raw_bytes_never_get_a_500(server, path, content):
    response = httpx.post(
        f"{server.url}{path}", content=content, headers={**AUTH, "content-type": "application/json"}, timeout=60
    )
    _assert_no_server_error(response, content)
