"""Replicas: two `cvml serve` processes on one Postgres database (different ports) assign
every user the same variant, both pick up a promotion through `--watch-registry`, and both
write one request log that `cvml logs stats` and `cvml abtest analyze` read whole."""

from __future__ import annotations

import json
import secrets
import subprocess
import time

import pytest
from serve_process import ServeProcess

from cvml.cli.main import app

EXPERIMENT = "replicas"
USERS = [f"user-{i}" for i in range(40)]
REWRITE = {"text": "Worked on the release process for the team", "task": "rewrite_bullet", "max_tokens": 2}


def _cli(runner, *args: str) -> dict | list:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, f"cvml {' '.join(args)}: {result.stderr}"
    return json.loads(result.stdout)


def _served_versions(client, replica: ServeProcess) -> dict[str, int | None]:
    """What each variant serves now, as the replica's /v1/models says."""
    cards = client.get(f"{replica.url}/v1/models").json()["data"]
    return {card["id"]: card["version"] for card in cards if card["id"] in ("a", "b")}


@pytest.fixture
def shared_db(pg_db_url, monkeypatch):
    """A fresh Postgres database that this process (the CLI, the reads) uses too, through CVML_DB_URL."""
    from cvml.storage import Database

    monkeypatch.setenv("CVML_DB_URL", pg_db_url)
    # Replicas hash user ids with one key, given to each from the environment (a secret manager).
    monkeypatch.setenv("CVML_LOG_KEY", secrets.token_hex(32))
    yield pg_db_url
    Database.dispose(pg_db_url)  # this process's pooled connections, before the database is dropped


@pytest.mark.slow
def test_two_replicas_on_one_postgres_agree_follow_promotions_and_share_one_log(runner, tiny_base, tmp_path, shared_db):
    import httpx

    started = time.monotonic()
    _cli(runner, "db", "upgrade", "--url", shared_db)
    for kind in ("base", "finetune"):
        _cli(runner, "models", "register", str(tiny_base), "--name", "cv", "--kind", kind)
    _cli(runner, "models", "promote", "cv@1", "--alias", "prod")
    _cli(runner, "models", "promote", "cv@2", "--alias", "canary")
    _cli(runner, "abtest", "start", "--experiment", EXPERIMENT, "--a", "cv@prod", "--b", "cv@canary", "--split", "50/50")

    args = ["--experiment", EXPERIMENT, "--watch-registry", "0.5", "--max-new-tokens", "2", "--device", "cpu",
            "--max-batch-size", "4"]
    replicas = [ServeProcess(args, tmp_path / f"home-{i}", env={"CVML_DB_URL": shared_db}, wait=False, name=f"replica-{i}")
                for i in (1, 2)]
    try:
        for replica in replicas:
            replica.wait_ready(timeout_s=120)
        ports = {replica.info["port"] for replica in replicas}
        assert len(ports) == 2
        for replica in replicas:
            assert replica.info["variants"] == {"a": "cv@1", "b": "cv@2"}, replica.info
        boot_s = time.monotonic() - started

        # Every user, on both replicas: the same arm, and the arm's current version.
        responses: list[dict] = []  # every answer: replica, user, variant, version, request_id
        with httpx.Client(timeout=60) as client:

            def ask(replica: ServeProcess, user: str) -> dict:
                response = client.post(f"{replica.url}/v1/cv/rewrite", json={**REWRITE, "user_id": user})
                assert response.status_code == 200, (replica.name, response.text)
                body = response.json()
                assert response.headers["x-cvml-variant"] == body["variant"]
                answer = {"replica": replica, "user": user, "variant": body["variant"], "version": body["version"],
                          "request_id": body["request_id"]}
                responses.append(answer)
                return answer

            first = {(r.name, user): ask(r, user) for user in USERS for r in replicas}
            arm = {user: first[("replica-1", user)]["variant"] for user in USERS}
            assert all(first[("replica-2", user)]["variant"] == arm[user] for user in USERS), {
                user: (first[("replica-1", user)]["variant"], first[("replica-2", user)]["variant"]) for user in USERS
            }
            assert set(arm.values()) == {"a", "b"}  # 40 users at 50/50: both arms have some
            assert all(a["version"] == {"a": 1, "b": 2}[a["variant"]] for a in responses)

            # Feedback on each replica's own answers: every 3rd user keeps the rewrite, every 5th rejects.
            feedback: dict[str, bool | None] = {}  # request id -> accepted (None: a rating only)
            for i, user in enumerate(USERS):
                for r in replicas:
                    if i % 3 == 0 or i % 5 == 0:
                        rid = first[(r.name, user)]["request_id"]
                        sent = client.post(f"{r.url}/v1/feedback", json={"request_id": rid, "accepted": i % 3 == 0})
                        assert sent.status_code == 200, (r.name, sent.text)
                        feedback[rid] = i % 3 == 0

            # Promote another version to b's alias; both replicas swap it in by themselves.
            _cli(runner, "models", "register", str(tiny_base), "--name", "cv", "--kind", "finetune")
            _cli(runner, "models", "promote", "cv@3", "--alias", "canary")
            promoted = time.monotonic()
            for replica in replicas:
                while _served_versions(client, replica) != {"a": 1, "b": 3}:
                    assert time.monotonic() - promoted < 30, (
                        f"{replica.name} still serves {_served_versions(client, replica)}:\n{replica.stderr()}"
                    )
                    time.sleep(0.1)
            swap_s = time.monotonic() - promoted

            # Users keep their arm (assignment is by variant name, not version); b now answers with v3.
            second = {(r.name, user): ask(r, user) for user in USERS for r in replicas}
            for (_, user), answer in second.items():
                assert answer["variant"] == arm[user]
                assert answer["version"] == {"a": 1, "b": 3}[answer["variant"]]
            for user in USERS[:10]:
                r = replicas[USERS.index(user) % 2]
                rid = second[(r.name, user)]["request_id"]
                assert client.post(f"{r.url}/v1/feedback", json={"request_id": rid, "rating": 4}).status_code == 200
                feedback.setdefault(rid, None)
    finally:
        codes = []
        for replica in replicas:  # both get SIGTERM, whatever happened to the other
            try:
                codes.append(replica.stop())
            except subprocess.TimeoutExpired:
                codes.append("no exit within 60 s (killed)")
    assert codes == [0, 0], "\n".join(r.stderr()[-3000:] for r in replicas)

    # One log, written by both: `cvml logs stats` and `cvml abtest analyze` count every request.
    sent_ids = {a["request_id"] for a in responses}
    assert len(sent_ids) == len(responses) == 4 * len(USERS)
    per_arm = {name: sum(a["variant"] == name for a in responses) for name in ("a", "b")}
    stats = _cli(runner, "logs", "stats")
    assert stats["requests"] == len(responses) and stats["users"] == len(USERS)
    assert stats["with_feedback"] == len(feedback)
    variants = {(v["experiment"], v["variant"]): v for v in stats["variants"]}
    assert set(variants) == {(EXPERIMENT, "a"), (EXPERIMENT, "b")}
    assert variants[(EXPERIMENT, "a")]["models"] == ["cv@1"]
    assert variants[(EXPERIMENT, "b")]["models"] == ["cv@2", "cv@3"]
    assert {name: variants[(EXPERIMENT, name)]["requests"] for name in ("a", "b")} == per_arm
    assert all(v["errors"] == 0 for v in variants.values())

    report = _cli(runner, "abtest", "analyze", EXPERIMENT, "--out", str(tmp_path / "report"))
    assert report["requests"] == per_arm
    assert report["units"] == {name: sum(v == name for v in arm.values()) for name in ("a", "b")}
    accepted = report["metrics"]["acceptance_rate"]
    verdicts = [rid for rid, kept in feedback.items() if kept is not None]
    assert accepted["n_a"] + accepted["n_b"] == len(verdicts)
    assert report["metrics"]["error_rate"]["n_a"] + report["metrics"]["error_rate"]["n_b"] == len(responses)

    # Row by row: each answer logged once, with the replica-independent arm and the version that served it.
    from cvml.serve.requestlog import RequestLog

    with RequestLog(shared_db) as log:
        rows = {row["request_id"]: row for row in log.query(experiment=EXPERIMENT)}
    assert set(rows) == sent_ids
    for answer in responses:
        row = rows[answer["request_id"]]
        assert (row["variant"], row["model_version"]) == (answer["variant"], f"cv@{answer['version']}")
    print(f"replicas ready in {boot_s:.1f} s; promotion seen by both in {swap_s:.1f} s; "
          f"total {time.monotonic() - started:.1f} s")
