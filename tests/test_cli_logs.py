"""`cvml logs ...` through the real entry point: JSON on stdout, tables, errors and exit codes."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from cvml.cli.logs import parse_duration
from cvml.cli.main import app
from cvml.serve.requestlog import LogEntry, RequestLog


@pytest.fixture
def cvml(runner):

    def run(*args: str, code: int = 0):
        result = runner.invoke(app, ["logs", *map(str, args)])
        assert result.exit_code == code, result.output
        return result

    return run


@pytest.fixture
def logged(cvml_home, store_backend):
    """A default-location log: u1 has 3 requests (one 45 days old), u2 has 2, one is anonymous."""
    now = datetime.now(timezone.utc)
    rows = [
        ("old", "u1", "a", now - timedelta(days=45), 200, 0.30),
        ("r1", "u1", "a", now - timedelta(hours=3), 200, 0.25),
        ("r2", "u2", "b", now - timedelta(hours=2), 200, 0.50),
        ("r3", "u1", "a", now - timedelta(hours=1), 504, None),
        ("r4", None, "b", now - timedelta(minutes=5), 200, 0.40),
        ("r5", "u2", "a", now - timedelta(minutes=1), 200, 0.20),
    ]
    with RequestLog() as log:
        for request_id, user, variant, at, status, e2e in rows:
            log.record(LogEntry(
                request_id=request_id, endpoint="/v1/cv/rewrite", status=status, at=at, experiment="exp-1",
                variant=variant, model_ref=f"cv@{'prod' if variant == 'a' else 'canary'}",
                model_version=f"cv@{3 if variant == 'a' else 4}", user_id=user, prompt_tokens=30,
                completion_tokens=None if e2e is None else 12, e2e_s=e2e,
            ))  # fmt: skip
        log.feedback("r1", accepted=True)
        log.feedback("r2", accepted=False, rating=2)
        return str(log.path)  # the default file, or the Postgres URL without its password


def _json(result):
    return json.loads(result.stdout)


def test_show_lists_recent_requests_newest_first(cvml, logged):
    rows = _json(cvml("show", "--json"))
    assert [r["request_id"] for r in rows] == ["r5", "r4", "r3", "r2", "r1", "old"]
    assert rows[3]["accepted"] is False and rows[3]["rating"] == 2.0 and rows[3]["model_version"] == "cv@4"
    assert [r["request_id"] for r in _json(cvml("show", "--limit", "2", "--json"))] == ["r5", "r4"]

    table = cvml("show", "--limit", "3").stdout
    lines = [line for line in table.splitlines() if "exp-1/" in line]
    assert len(lines) == 3
    assert lines[0].split()[2:] == ["r5", "exp-1/a", "cv@3", "200", "200", "30→12"]
    assert lines[2].split()[2:] == ["r3", "exp-1/a", "cv@3", "504", "30→?"]


def test_show_filters_by_experiment_and_says_when_empty(cvml, logged):
    assert _json(cvml("show", "--experiment", "other", "--json")) == []
    assert "No requests logged yet" in cvml("show", "--experiment", "other").stdout


def test_stats_reports_each_variant(cvml, logged):
    stats = _json(cvml("stats", "--json"))
    assert (stats["requests"], stats["users"], stats["with_feedback"]) == (6, 2, 2)
    a, b = stats["variants"]
    assert (a["variant"], a["requests"], a["errors"], a["models"]) == ("a", 4, 1, ["cv@3"])
    assert (b["variant"], b["requests"], b["acceptance_rate"], b["mean_rating"]) == ("b", 2, 0.0, 2.0)
    assert a["e2e_p50_s"] == pytest.approx(0.25)  # 0.20, 0.25, 0.30; the 504 has none

    text = cvml("stats").stdout
    assert "6 request(s), 2 user(s), 2 with feedback, 0 with text" in text
    rows = {line.split()[0]: line.split()[1:] for line in text.splitlines() if line.startswith("exp-1/")}
    assert rows["exp-1/a"] == ["cv@3", "4", "1", "2", "100%", "(1)", "250/295", "ms"]
    assert rows["exp-1/b"] == ["cv@4", "2", "0", "1", "0%", "(1)", "2.00", "(1)", "450/495", "ms"]


def test_purge_deletes_old_requests(cvml, logged):
    result = _json(cvml("purge", "--older-than", "30d", "--json"))
    assert result == {"deleted": 1, "older_than_s": 30 * 86400, "db": logged}
    assert "Deleted 2 request(s) older than 90m" in cvml("purge", "--older-than", "90m").stdout
    assert [r["request_id"] for r in _json(cvml("show", "--json"))] == ["r5", "r4", "r3"]


@pytest.mark.parametrize(("value", "message"), [("30", "invalid duration '30'"), ("30x", "invalid duration"),
                                                ("d30", "invalid duration"), ("0d", "is not positive")])  # fmt: skip
def test_purge_rejects_a_bad_duration(cvml, logged, value, message):
    result = cvml("purge", "--older-than", value, code=2)
    assert message in result.stderr and "30d" in result.stderr
    assert len(_json(cvml("show", "--json"))) == 6


def test_forget_erases_one_user(cvml, logged):
    assert _json(cvml("forget", "--user-id", "u1", "--json")) == {"deleted": 3, "db": logged}
    assert [r["request_id"] for r in _json(cvml("show", "--json"))] == ["r5", "r4", "r2"]
    assert "Deleted 0 request(s)" in cvml("forget", "--user-id", "u1").stdout


def test_forget_needs_a_user_id(cvml, logged):
    assert "--user-id" in cvml("forget", code=2).stderr


@pytest.mark.parametrize(
    "command", [["show"], ["stats"], ["purge", "--older-than", "1d"], ["forget", "--user-id", "u"]]
)
def test_a_missing_log_is_an_error_and_is_not_created(cvml, tmp_path, command):
    missing = tmp_path / "nowhere" / "requests.db"
    result = cvml(*command, "--db", missing, code=1)
    assert f"no request log at {missing}" in " ".join(result.stderr.split())
    assert "cvml serve writes it" in result.stderr
    assert not missing.exists()


def test_db_may_name_the_file_or_its_folder(cvml, tmp_path):
    folder = tmp_path / "elsewhere"
    with RequestLog(folder / "requests.db") as log:
        log.record(LogEntry(request_id="x1", endpoint="/v1/chat/completions", status=200))
    assert [r["request_id"] for r in _json(cvml("show", "--db", folder, "--json"))] == ["x1"]
    assert _json(cvml("stats", "--db", folder / "requests.db", "--json"))["requests"] == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [("30d", timedelta(days=30)), ("12h", timedelta(hours=12)), ("90m", timedelta(minutes=90)),
     ("45s", timedelta(seconds=45)), ("2w", timedelta(weeks=2)), ("1.5h", timedelta(minutes=90))],
)  # fmt: skip
def test_parse_duration(text, expected):
    assert parse_duration(text) == expected
