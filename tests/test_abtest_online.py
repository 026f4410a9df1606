"""Online A/B: the experiments table, analysis of the request log, stopping (promote/rollback),
and the end-to-end path through `cvml serve`."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from cvml.abtest.decision import DONT_SHIP, INCONCLUSIVE, SHIP
from cvml.registry.experiments import ExperimentError, ExperimentStore, load_experiment
from cvml.abtest.online import analyze_experiment, analyze_rows
from cvml.abtest.promotion import stop_experiment
from cvml.abtest.report import write_report
from cvml.errors import ConfigError, RegistryError
from cvml.recipe import AbtestSpec
from cvml.registry import Registry
from cvml.serve.router import Router

SPEC = AbtestSpec.model_validate({"online": {"mde": 0.05, "min_samples": 50}})
T0 = datetime(2025, 1, 1, tzinfo=timezone.utc)


@pytest.fixture
def registry(store_backend, tmp_path):
    """cv@1 (prod) and cv@2 (canary), two versions at one folder."""
    model = tmp_path / "model"
    model.mkdir()
    reg = Registry()
    reg.register(model, "cv", "base")
    reg.register(model, "cv", "finetune", parent="cv@1")
    reg.promote("cv@1", "prod")
    reg.promote("cv@2", "canary")
    return reg


def _traffic(experiment, n_users, accept_a, accept_b, error_b=0.0, seed=0, drop_b=0.0):
    """Request-log rows as `RequestLog.query` returns them: one request per user, routed by the real router."""
    rng = np.random.default_rng(seed)
    router = Router(experiment.variants, experiment=experiment.name)
    rows = []
    for i in range(n_users):
        arm = router.assign(f"user-{i}").name
        if arm == "b" and rng.random() < drop_b:
            continue  # b's requests lost (the planted sample-ratio mismatch)
        failed = arm == "b" and rng.random() < error_b
        at = T0 + timedelta(seconds=i)
        rows.append({
            "request_id": f"r{i}", "at": at.isoformat(), "experiment": experiment.name, "variant": arm,
            "user_key": f"key-{i}", "status": 500 if failed else 200, "e2e_s": None if failed else 0.2 + rng.random() * 0.05,
            "ttft_s": None if failed else 0.02, "fabrication": None if failed else False, "pii_leak": None if failed else False,
            "accepted": None if failed else bool(rng.random() < (accept_b if arm == "b" else accept_a)),
            "rating": None, "feedback_at": None if failed else (at + timedelta(seconds=30)).isoformat(),
        })  # fmt: skip
    return rows


# ------------------------------------------------------------------------------ experiments


def test_start_records_refs_versions_and_split(registry):
    store = ExperimentStore()
    exp = store.start("rewrite-v4", "cv@prod", "cv@canary", "90 / 10")
    assert (exp.a_version, exp.b_version, exp.split, exp.status) == ("cv@1", "cv@2", "90/10", "running")
    assert [(v.name, v.ref, v.weight) for v in load_experiment("rewrite-v4").variants] == [
        ("a", "cv@prod", 90.0), ("b", "cv@canary", 10.0),
    ]  # fmt: skip
    assert exp.variant_specs == ["a=cv@prod", "b=cv@canary"]
    assert [e.name for e in store.list()] == ["rewrite-v4"]
    with pytest.raises(ExperimentError, match="already exists"):
        store.start("rewrite-v4", "cv@prod", "cv@canary")
    with pytest.raises(ExperimentError) as info:
        store.get("rewrite-v5")
    assert "did you mean 'rewrite-v4'" in info.value.hint


def test_start_refuses_bad_split_unknown_model_and_bad_name(registry):
    store = ExperimentStore()
    with pytest.raises(ConfigError, match="sums to 110"):
        store.start("e1", "cv@prod", "cv@canary", "90/20")
    with pytest.raises(RegistryError, match="no alias 'beta'"):
        store.start("e1", "cv@prod", "cv@beta")
    with pytest.raises(ExperimentError, match="invalid experiment name"):
        store.start("../e1", "cv@prod", "cv@canary")
    assert store.list() == []


# ------------------------------------------------------------------------------ analysis


def test_a_better_candidate_ships_and_the_sequential_test_is_reported(registry):
    exp = ExperimentStore().start("e", "cv@prod", "cv@canary", "50/50")
    result = analyze_rows(exp, _traffic(exp, 1200, 0.30, 0.45), SPEC)
    assert not result.srm["mismatch"]
    primary = result.comparisons["acceptance_rate"]
    assert primary.test == "msprt" and primary.low > 0
    fixed = primary.extra["fixed_horizon"]
    assert fixed["test"] == "two-proportion" and fixed["pvalue"] < 1e-4
    # The always-valid interval is wider than the fixed-horizon one: the price of peeking.
    assert primary.high - primary.low > fixed["high"] - fixed["low"]
    assert result.decision.verdict == SHIP
    assert result.comparisons["error_rate"].n_a == result.requests["a"]


def test_aa_traffic_does_not_ship_and_says_how_much_more_it_needs(registry):
    exp = ExperimentStore().start("e", "cv@prod", "cv@canary", "90/10")
    result = analyze_rows(exp, _traffic(exp, 1500, 0.30, 0.30, seed=1), SPEC)
    assert result.decision.verdict == INCONCLUSIVE
    assert result.decision.required_n > 1500


def test_planted_sample_ratio_mismatch_blocks_the_verdict(registry):
    exp = ExperimentStore().start("e", "cv@prod", "cv@canary", "50/50")
    result = analyze_rows(exp, _traffic(exp, 4000, 0.30, 0.50, drop_b=0.15), SPEC)
    assert result.srm["mismatch"] and result.srm["pvalue"] < 0.001
    assert result.decision.verdict == INCONCLUSIVE
    assert result.decision.reasons[0].startswith("sample-ratio mismatch")


def test_a_candidate_that_errors_more_does_not_ship(registry):
    exp = ExperimentStore().start("e", "cv@prod", "cv@canary", "50/50")
    result = analyze_rows(exp, _traffic(exp, 2000, 0.30, 0.45, error_b=0.08), SPEC)
    assert result.comparisons["acceptance_rate"].low > 0  # better where it answers...
    assert result.decision.verdict == DONT_SHIP  # ...but fails 8% of requests
    assert [g.metric for g in result.decision.guardrails if not g.passed] == ["error_rate"]


def test_no_feedback_yet_is_inconclusive(registry):
    exp = ExperimentStore().start("e", "cv@prod", "cv@canary", "50/50")
    rows = [{**row, "accepted": None, "feedback_at": None} for row in _traffic(exp, 50, 0.3, 0.3)]
    result = analyze_rows(exp, rows, SPEC)
    assert result.decision.verdict == INCONCLUSIVE and "no acceptance_rate" in result.decision.reasons[0]


@pytest.mark.integration  # hundreds of rows through the request log's writer
def test_analysis_reads_the_request_log_and_writes_the_report(registry, tmp_path):
    from cvml.serve.requestlog import LogEntry, RequestLog

    exp = ExperimentStore().start("e", "cv@prod", "cv@canary", "50/50")
    with RequestLog() as log:
        for row in _traffic(exp, 600, 0.25, 0.55, seed=3):
            log.record(LogEntry(request_id=row["request_id"], endpoint="/v1/cv/rewrite", status=row["status"],
                                at=row["at"], experiment="e", variant=row["variant"], user_id=row["user_key"],
                                e2e_s=row["e2e_s"], ttft_s=row["ttft_s"]))  # fmt: skip
            log.feedback(row["request_id"], accepted=row["accepted"])
    result = analyze_experiment("e", SPEC)
    assert sum(result.requests.values()) == 600 and result.units == result.requests
    assert result.decision.verdict == SHIP
    files = write_report(result, tmp_path / "report")
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    path = report["sequential"]
    assert path["method"] == "msprt" and path["n"][-1] == 600 and path["first_rejection_n"] < 600
    assert all(p1 >= p2 for p1, p2 in zip(path["pvalue"], path["pvalue"][1:]))  # always-valid p never rises
    for png in ("differences", "sequential"):
        assert open(files[png], "rb").read(4) == b"\x89PNG"
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "## Decision: **SHIP**" in markdown and "Sequential vs fixed-horizon" in markdown


# ------------------------------------------------------------------------------ stopping


def test_promote_moves_a_alias_to_b_with_an_audit_event(registry):
    ExperimentStore().start("e", "cv@prod", "cv@canary", "90/10")
    result = stop_experiment("e", "promote", reason="b wins")
    assert registry.resolve("cv@prod").version == 2
    event = registry.events("cv")[-1]
    assert (event.action, event.alias, event.from_version, event.to_version, event.reason) == ("promote", "prod", 1, 2, "b wins")
    assert result.experiment.status == "stopped" and result.experiment.decision["action"] == "promote"
    with pytest.raises(ExperimentError, match="already stopped"):
        stop_experiment("e", "rollback")
    with pytest.raises(ExperimentError, match="was stopped"):
        load_experiment("e")


def test_rollback_keeps_a_and_pops_b_alias(registry, tmp_path):
    registry.register(tmp_path / "model", "cv", "finetune")  # cv@3
    registry.promote("cv@3", "canary")
    ExperimentStore().start("e", "cv@prod", "cv@canary", "90/10")
    result = stop_experiment("e", "rollback")
    assert registry.resolve("cv@prod").version == 1
    assert registry.resolve("cv@canary").version == 2
    assert result.event["action"] == "rollback" and "rolled back from v3 to v2" in result.note


@pytest.mark.integration  # hundreds of rows through the request log's writer
def test_auto_promotes_only_on_ship(registry):
    from cvml.serve.requestlog import LogEntry, RequestLog

    ExperimentStore().start("e", "cv@prod", "cv@canary", "50/50")
    exp = load_experiment("e")
    with RequestLog() as log:
        for row in _traffic(exp, 200, 0.3, 0.3, seed=4):
            log.record(LogEntry(request_id=row["request_id"], endpoint="/v1/cv/rewrite", status=200, at=row["at"],
                                experiment="e", variant=row["variant"], user_id=row["user_key"]))  # fmt: skip
            log.feedback(row["request_id"], accepted=row["accepted"])
    waiting = stop_experiment("e", "auto", spec=SPEC)
    assert (waiting.verdict, waiting.stopped, waiting.action) == (INCONCLUSIVE, False, "none")
    assert registry.resolve("cv@prod").version == 1 and load_experiment("e").status == "running"


# ------------------------------------------------------------------------------ end to end


def test_serve_split_feedback_analyze_and_promote_end_to_end(runner, tiny_base, tmp_path):
    """Serve two registered tiny models 50/50, feed back that b's answers are kept far more often,
    let `analyze` find it, `stop --auto` promote b, and the running server serve it as prod."""
    import httpx
    
    from cvml.cli.main import app
    from cvml.recipe import ServeSpec
    from cvml.serve.server import BackgroundServer

    reg = Registry()
    reg.register(tiny_base, "cv", "base")
    reg.register(tiny_base, "cv", "finetune", parent="cv@1")
    reg.promote("cv@1", "prod")
    reg.promote("cv@2", "canary")
    rule = ["--set", "abtest.online.mde=0.2", "--set", "abtest.online.min_samples=15"]
    started = runner.invoke(app, ["abtest", "start", "--experiment", "e2e", "--a", "cv@prod", "--b", "cv@canary", "--split", "50/50"])
    assert started.exit_code == 0, started.stderr
    assert load_experiment("e2e").split == "50/50"
    # serve routes by the recorded experiment: its arms and split come from the database
    spec = ServeSpec(experiment="e2e", port=0, max_new_tokens=4, device="cpu")
    rng = np.random.default_rng(5)
    request = {"text": "Worked on the release process for the team", "task": "rewrite_bullet", "max_tokens": 4}
    with BackgroundServer(spec) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        served = {}
        for i in range(80):
            answer = client.post("/v1/cv/rewrite", json={**request, "user_id": f"user-{i}"}).json()
            served[f"user-{i}"] = answer["variant"]
            kept = bool(rng.random() < (0.8 if answer["variant"] == "b" else 0.2))
            assert client.post("/v1/feedback", json={"request_id": answer["request_id"], "accepted": kept}).status_code == 200

        analyzed = runner.invoke(app, ["abtest", "analyze", "e2e", *rule, "--out", str(tmp_path / "report"), "--json"])
        assert analyzed.exit_code == 0, analyzed.stderr
        report = json.loads(analyzed.stdout)
        assert report["requests"]["a"] + report["requests"]["b"] == 80 and not report["srm"]["mismatch"]
        assert report["metrics"]["acceptance_rate"]["low"] > 0
        assert report["decision"]["verdict"] == SHIP

        stopped = runner.invoke(app, ["abtest", "stop", "e2e", "--auto", *rule, "--json"])
        assert stopped.exit_code == 0, stopped.stderr
        assert json.loads(stopped.stdout)["action"] == "promote"
        assert reg.resolve("cv@prod").version == 2 and reg.events("cv")[-1].action == "promote"

        assert client.post("/admin/reload").status_code == 200
        user_a = next(user for user, variant in served.items() if variant == "a")
        answer = client.post("/v1/cv/rewrite", json={**request, "user_id": user_a}).json()
        assert (answer["variant"], answer["version"]) == ("a", 2)  # a's alias now serves b's version
