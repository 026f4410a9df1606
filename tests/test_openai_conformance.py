"""`cvml serve` against the official `openai` client: the deviations clients notice
(context errors, model retrieval, stream chunk shape, tokens of abandoned streams, field
errors, unsupported fields) and structured output (`response_format`), on the tiny model."""

from __future__ import annotations

import json
import time

import httpx
import jsonschema
import openai
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from conftest import OpenVinoModel
from test_serve_app import AUTH, KEY, registry, start_server  # noqa: F401  (registry is a fixture)

CHAT = [{"role": "user", "content": "Rewrite this CV bullet to be stronger:\nLed a team of five engineers"}]
SCHEMAS = {
    "sections": {
        "type": "object",
        "properties": {"bullets": {"type": "array", "items": {"type": "string"}},
                       "skills": {"type": "array", "items": {"type": "string"}}},
        "required": ["bullets", "skills"], "additionalProperties": False,
    },
    "summary": {
        "type": "object",
        "properties": {"summary": {"type": "string", "maxLength": 80}, "years": {"type": "integer"}},
        "required": ["summary", "years"], "additionalProperties": False,
    },
    "choice": {
        "type": "object",
        "properties": {"tone": {"enum": ["formal", "neutral", "warm"]}, "keep": {"type": "boolean"}},
        "required": ["tone", "keep"], "additionalProperties": False,
    },
}


@pytest.fixture(scope="module")
def server(tmp_path_factory, backend, registry):  # noqa: F811
    running = start_server(tmp_path_factory.mktemp("conformance"), backend, registry, max_new_tokens=400)
    yield running
    running.stop()


@pytest.fixture
def oai(server):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0)


def _metric(server, name: str) -> float:
    text = httpx.get(f"{server.url}/metrics").text
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name)


def test_max_tokens_beyond_the_context_is_400_in_openai_words(oai):
    with pytest.raises(openai.BadRequestError) as info:
        oai.chat.completions.create(model="tiny@1", messages=CHAT, max_tokens=100_000)
    error = info.value.body
    assert (error["code"], error["param"]) == ("context_length_exceeded", "messages")
    assert error["message"].startswith("This model's maximum context length is 512 tokens. However, you requested")
    assert "in the completion" in error["message"]
    with pytest.raises(openai.BadRequestError) as info:  # the prompt alone
        oai.completions.create(model="tiny@1", prompt="budget " * 2000)
    assert info.value.body["code"] == "context_length_exceeded" and "resulted in" in info.value.body["message"]
    ok = oai.chat.completions.create(model="tiny@1", messages=CHAT)  # no ask: the server's default fits
    assert ok.choices[0].finish_reason in ("stop", "length")


def test_models_can_be_retrieved_one_by_one(oai):
    listed = {m.id for m in oai.models.list().data}
    assert "tiny@1" in listed
    assert oai.models.retrieve("tiny@1").id == "tiny@1"
    with pytest.raises(openai.NotFoundError) as info:
        oai.models.retrieve("nope")
    assert info.value.body["code"] == "model_not_found"


def test_stream_chunks_carry_only_what_they_hold(server):
    body = {"model": "tiny@1", "messages": CHAT, "max_tokens": 6, "stream": True, "temperature": 0}
    for include_usage in (False, True):
        response = httpx.post(f"{server.url}/v1/chat/completions", headers=AUTH, timeout=60,
                              json={**body, "stream_options": {"include_usage": include_usage}})
        chunks = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: {")]
        first, *middle, last = chunks
        assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
        for chunk in middle:
            for choice in chunk["choices"]:
                assert "role" not in choice["delta"] and None not in choice["delta"].values()
        finish = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
        assert len(finish) == 1 and finish[0]["choices"][0]["delta"] == {}
        if include_usage:
            assert last["usage"]["completion_tokens"] >= 1 and last["choices"] == []
            assert all(c["usage"] is None for c in chunks[:-1])
        else:
            assert all("usage" not in c for c in chunks)


def test_tokens_streamed_before_a_disconnect_are_counted(server):
    before = _metric(server, "vllm:generation_tokens_total")
    received = 0
    with httpx.stream("POST", f"{server.url}/v1/chat/completions", headers=AUTH, timeout=60,
                      json={"model": "tiny@1", "messages": CHAT, "max_tokens": 300, "stream": True,
                            "ignore_eos": True}) as response:
        for line in response.iter_lines():
            if line.startswith("data: {") and json.loads(line[6:])["choices"][0]["delta"].get("content"):
                received += 1
                if received == 5:
                    break  # the client leaves mid-stream
    deadline = time.monotonic() + 10
    while _metric(server, "vllm:generation_tokens_total") - before < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _metric(server, "vllm:generation_tokens_total") - before >= 5


def test_field_errors_name_the_field_without_internal_prefixes(server):
    response = httpx.post(f"{server.url}/v1/cv/rewrite", headers=AUTH,
                          json={"text": "Led a team", "task": "tailor_section"})
    error = response.json()["error"]
    assert response.status_code == 400 and error["param"] == "job_description"
    assert error["message"] == "job_description: task tailor_section needs a job_description"


@pytest.mark.parametrize(("field", "value"), [
    ("tools", [{"type": "function", "function": {"name": "f", "parameters": {}}}]),
    ("tool_choice", "auto"), ("logit_bias", {"50": 10}), ("logprobs", True), ("functions", [{"name": "f"}]),
])
def test_fields_that_change_the_answer_are_refused_by_name(oai, field, value):
    with pytest.raises(openai.BadRequestError) as info:
        oai.chat.completions.create(model="tiny@1", messages=CHAT, max_tokens=4, extra_body={field: value})
    assert (info.value.body["param"], info.value.body["code"]) == (field, "unsupported_parameter")
    harmless = oai.chat.completions.create(model="tiny@1", messages=CHAT, max_tokens=4, extra_body={"logprobs": False})
    assert harmless.choices[0].message.content is not None


@settings(max_examples=12, deadline=None)
@given(name=st.sampled_from(sorted(SCHEMAS)), seed=st.integers(0, 10_000))
def test_every_structured_output_matches_its_schema(server, backend, name, seed):
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0)
    if isinstance(backend, OpenVinoModel):  # no per-token hook in OpenVINO GenAI: refused, never unchecked
        with pytest.raises(openai.BadRequestError) as info:
            client.chat.completions.create(model="tiny@1", messages=CHAT, max_tokens=30, response_format={
                "type": "json_schema", "json_schema": {"name": name, "schema": SCHEMAS[name]}})
        assert (info.value.body["param"], info.value.body["code"]) == ("response_format", "unsupported_value")
        return
    answer = client.chat.completions.create(
        model="tiny@1", messages=CHAT, max_tokens=300, temperature=1.0, seed=seed,
        response_format={"type": "json_schema", "json_schema": {"name": name, "schema": SCHEMAS[name], "strict": True}},
    )
    choice = answer.choices[0]
    if name == "choice":  # a short grammar always closes within the budget
        assert choice.finish_reason == "stop"
    if choice.finish_reason == "stop":  # a length cut ends mid-value, as it would at OpenAI
        assert _valid(choice.message.content, SCHEMAS[name]), repr(choice.message.content)


def test_json_object_and_bad_schemas(oai, backend):
    if isinstance(backend, OpenVinoModel):
        with pytest.raises(openai.BadRequestError) as info:
            oai.chat.completions.create(model="tiny@1", messages=CHAT, max_tokens=20, response_format={"type": "json_object"})
        assert info.value.body["code"] == "unsupported_value"
        return
    answer = oai.chat.completions.create(model="tiny@1", messages=CHAT, max_tokens=200, temperature=0,
                                         response_format={"type": "json_object"})
    if answer.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(answer.choices[0].message.content), dict)
    with pytest.raises(openai.BadRequestError) as info:
        oai.chat.completions.create(model="tiny@1", messages=CHAT, max_tokens=4,
                                    response_format={"type": "json_schema"})
    assert info.value.body["param"].startswith("response_format")


def _valid(text: str, schema: dict) -> bool:
    try:
        jsonschema.validate(json.loads(text), schema)
    except (ValueError, jsonschema.ValidationError):
        return False
    return True


def test_a_grounded_rewrite_as_json(server, backend):
    """Schema and grounding constrain the same decoding: the JSON parses and states no number
    the text lacks. The openvino engine cannot constrain decoding: it says grounding is off
    and the guard still checks the answer."""
    from cvml.safety.grounding import grounded, grounding_facts

    text = "Cut API latency by 25% for 1,200 users"
    if isinstance(backend, OpenVinoModel):
        response = httpx.post(f"{server.url}/v1/cv/rewrite", headers=AUTH, timeout=60, json={
            "text": text, "task": "rewrite_bullet", "max_tokens": 60, "grounding": "numbers", "guard": "block"})
        body = response.json()
        assert response.status_code == 200, body
        assert body["guard"]["grounding"] == "off"
        assert body["guard"]["action"] == "blocked" or grounded(body["output"], grounding_facts(text, None, "numbers"))
        return
    schema = SCHEMAS["sections"]
    for seed in range(4):
        response = httpx.post(f"{server.url}/v1/cv/rewrite", headers=AUTH, timeout=60, json={
            "text": text, "task": "rewrite_bullet", "max_tokens": 200, "temperature": 1.0, "seed": seed,
            "grounding": "numbers", "guard": "flag",
            "response_format": {"type": "json_schema", "json_schema": {"schema": schema}},
        })
        body = response.json()
        assert response.status_code == 200, body
        assert grounded(body["output"], grounding_facts(text, None, "numbers")), body["output"]
        if body["finish_reason"] == "stop":
            assert _valid(body["output"], schema), body["output"]
