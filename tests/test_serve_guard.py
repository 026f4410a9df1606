"""The rewrite's guard and grounding: the guard's decisions (unit and property tests), and
`/v1/cv/rewrite` on a real server with the tiny model: grounded decoding, retries, blocks,
and the metrics that count them."""

from __future__ import annotations

import time

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families
from test_serve_app import AUTH, KEY, registry, start_server  # noqa: F401  (registry is a fixture)

from cvml.safety.grounding import grounded, grounding_facts
from cvml.serve.checks import run_checks
from cvml.serve.guard import GuardOutcome, failing, retry_params
from cvml.serve.types import SamplingParams

SOURCE = "Led a team of five engineers at Acme Corp and cut costs by 12%"


def _checks(**flags) -> dict:
    return {name: {"flagged": flagged} for name, flagged in flags.items()}


def test_outcomes():
    outcome = GuardOutcome("retry", "strict")
    outcome.observe(_checks(fabrication=True, pii_leak=False, injection=True))
    assert outcome.should_retry(2, deadline=None) and outcome.action == "blocked"
    outcome.observe(_checks(fabrication=False, pii_leak=False, injection=True))  # an input finding is no failure
    assert outcome.action == "retried" and not outcome.should_retry(2, None)
    assert outcome.to_dict() == {"action": "retried", "attempts": 2, "reasons": ["fabrication"], "grounding": "strict"}

    flag = GuardOutcome("flag", "off")
    flag.observe(_checks(pii_leak=True))
    assert flag.action == "flagged" and not flag.should_retry(2, None)
    block = GuardOutcome("block", "numbers")
    block.observe(_checks(abusive=True))
    assert block.action == "blocked" and not block.should_retry(2, None)


def test_retries_are_bounded_by_count_and_deadline():
    outcome = GuardOutcome("retry", "strict")
    for _ in range(3):
        outcome.observe(_checks(fabrication=True))
    assert not outcome.should_retry(2, None)  # 1 attempt + 2 retries
    slow = GuardOutcome("retry", "strict")
    time.sleep(0.05)
    slow.observe(_checks(fabrication=True))
    assert not slow.should_retry(2, deadline=time.monotonic() + 0.01)  # no room for another attempt
    assert slow.should_retry(2, deadline=time.monotonic() + 10)


def test_retry_params_are_seeded_draws():
    greedy = SamplingParams(max_new_tokens=32)
    first, second = retry_params(greedy, 1, 41), retry_params(greedy, 2, 41)
    assert first.temperature > 0 and first.seed != second.seed and first == retry_params(greedy, 1, 41)
    assert first.max_new_tokens == 32


_FRAGMENTS = st.sampled_from([
    "Led a team of five engineers", "at Acme Corp", "cut costs by 12%", "cut costs by 40%", "saving 3 hours a week",
    "at Google", "with an MBA", "email me at someone.else@example.com", "call +44 7700 900123", "in 2019",
    "Improved delivery", "for 1,200 users", "across 7 countries", "and", ".", ",",
])


@settings(max_examples=150, deadline=None)
@given(parts=st.lists(_FRAGMENTS, min_size=1, max_size=8), guard=st.sampled_from(["block", "retry"]))
def test_block_never_returns_a_failing_text(parts, guard):
    """Whatever the model writes, what a blocking guard returns passes the output checks."""
    output = " ".join(parts)
    outcome = GuardOutcome(guard, "off")
    outcome.observe(run_checks(output, SOURCE, None))
    returned = SOURCE if outcome.action == "blocked" else output
    assert failing(run_checks(returned, SOURCE, None)) == []


# --------------------------------------------------------------------------- on a server


def _rewrite(client, **body):
    payload = {"text": "Led a team of five engineers and cut costs by 12%", "task": "rewrite_bullet",
               "max_tokens": 24, **body}
    response = client.post("/v1/cv/rewrite", json=payload)
    assert response.status_code == 200, response.text
    return response.json()


class _Running:
    """A started server and a client on it, stopped on the way out."""

    def __init__(self, server):
        self.server = server

    def __enter__(self):
        self.client = httpx.Client(base_url=self.server.url, headers=AUTH, timeout=60)
        return self.server, self.client

    def __exit__(self, *exc):
        self.client.close()
        self.server.stop()


def _metric(server, name: str, **labels) -> float:
    text = httpx.get(f"{server.url}/metrics").text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def test_grounded_rewrites_state_only_the_inputs_numbers(tmp_path, loaded, registry):  # noqa: F811
    with _Running(start_server(tmp_path, loaded, registry)) as (server, client):
        text = "Cut API latency by 25% for 1,200 users"
        for mode in ("numbers", "strict"):
            body = _rewrite(client, text=text, grounding=mode, guard="flag", temperature=1.0, seed=3, max_tokens=40)
            assert body["guard"]["grounding"] == mode
            assert grounded(body["output"], grounding_facts(text, None, mode)), body["output"]
        body = _rewrite(client, text=text)  # the recipe's defaults: strict, retry
        assert body["guard"]["grounding"] == "strict" and body["guard"]["action"] in ("passed", "retried", "blocked")


def test_retry_resamples_until_the_checks_pass_and_block_returns_the_text(tmp_path, loaded, registry):  # noqa: F811
    calls = []

    def checks(output, source, job_description):
        """The real checks, with a fabrication flag on the first two attempts of each request."""
        result = run_checks(output, source, job_description)
        calls.append(output)
        if len(calls) % 3 != 0:
            result["fabrication"] = {"flagged": True, "n_claims": 1, "claims": []}
        return result

    with _Running(start_server(tmp_path, loaded, registry, checks=checks, guard_retries=2)) as (server, client):
        body = _rewrite(client, guard="retry")
        assert body["guard"] == {"action": "retried", "attempts": 3, "reasons": ["fabrication"], "grounding": "strict"}
        assert body["output"] == calls[-1]
        assert body["usage"]["completion_tokens"] >= 3  # the three attempts' tokens

        body = _rewrite(client, guard="block")
        assert body["guard"]["action"] == "blocked" and body["guard"]["attempts"] == 1
        assert body["output"] == "Led a team of five engineers and cut costs by 12%"

        body = _rewrite(client, guard="flag")
        assert body["guard"]["action"] == "flagged" and body["checks"]["fabrication"]["flagged"]
        assert body["output"] == calls[-1]

        assert _metric(server, "cvml_guard_outcomes_total", action="retried") == 1
        assert _metric(server, "cvml_guard_outcomes_total", action="blocked") == 1
        assert _metric(server, "cvml_guard_outcomes_total", action="flagged") == 1


def test_guard_and_grounding_are_validated(tmp_path, loaded, registry):  # noqa: F811
    with _Running(start_server(tmp_path, loaded, registry)) as (server, client):
        bad = client.post("/v1/cv/rewrite", json={"text": "Led a team", "task": "rewrite_bullet", "guard": "maybe"})
        assert bad.status_code == 400 and "guard" in bad.text
        bad = client.post("/v1/cv/rewrite", json={"text": "Led a team", "task": "rewrite_bullet", "grounding": "loose"})
        assert bad.status_code == 400 and "grounding" in bad.text
    assert KEY
