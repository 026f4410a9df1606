"""`cvml monitor report|watch|export` through the CLI (Typer's CliRunner) on a seeded log:
exit codes 0 / 1 / 2, --json on stdout, flags over --set over the recipe, the report
folder, the registry event, the watcher's alerts."""

from __future__ import annotations

import json

import pytest
import yaml
from monitor_data import REFERENCE, day, seed_log
from test_monitor_watch import Receiver

from cvml.cli.main import app
from cvml.registry import Registry


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli-monitor")
    seed_log(folder / "requests.db", folder / "registry.db", folder)
    return folder


def _args(seeded, *more: str) -> list[str]:
    return ["--db", str(seeded / "requests.db"), "--registry", str(seeded / "registry.db"), *more]


def test_report_exits_0_without_drift_and_1_with_it(runner, seeded, tmp_path):
    calm = runner.invoke(app, ["monitor", "report", *_args(seeded, "--model", "sim@1", "--reference", REFERENCE,
                               "--window", day("no_drift"), "--out", str(tmp_path / "calm"), "--json")])  # fmt: skip
    assert calm.exit_code == 0, calm.stderr
    payload = json.loads(calm.stdout)
    assert payload["schema"] == "cvml.monitor/1" and payload["verdict"]["state"] == "ok"
    assert payload["window"]["requests"] == 400 and payload["reference"]["requests"] == 1200
    assert (tmp_path / "calm" / "report.html").is_file() and payload["files"]["html"].endswith("report.html")

    drift = runner.invoke(app, ["monitor", "report", *_args(seeded, "--model", "sim@1", "--reference", "training",
                                "--window", day("language_shift"), "--out", str(tmp_path / "drift"))])  # fmt: skip
    assert drift.exit_code == 1, drift.stderr
    assert "DRIFT" in drift.stdout and "language" in drift.stdout and "Report:" in drift.stdout

    alert = runner.invoke(app, ["monitor", "report", *_args(seeded, "--model", "sim@1", "--reference", REFERENCE,
                                "--window", day("regressed_model"), "--out", str(tmp_path / "alert"), "--json")])  # fmt: skip
    assert alert.exit_code == 1
    assert json.loads(alert.stdout)["verdict"]["state"] == "quality_alert"


def test_usage_and_data_errors_exit_2_with_a_message_and_a_hint(runner, seeded, tmp_path):
    cases = {
        "no request to /v1/cv/rewrite": ["--window", "2026-10-01..2026-10-01", "--reference", "previous"],
        "is not a duration": ["--window", "7x"],
        "no model named 'nope'": ["--model", "nope@1", "--window", day("no_drift")],
        "monitor.reference": ["--window", day("no_drift"), "--reference", "yesterday"],
        "holds 400 request(s); its tests need at least 1000": ["--window", day("no_drift"), "--reference", "previous",
                                                               "--set", "monitor.min_rows=1000"],
    }  # fmt: skip
    for message, flags in cases.items():
        result = runner.invoke(app, ["monitor", "report", *_args(seeded, *flags), "--out", str(tmp_path / "x")])
        assert result.exit_code == 2, (message, result.stdout, result.stderr)
        assert message in result.stderr and "Error:" in result.stderr
    missing = runner.invoke(app, ["monitor", "report", "--db", str(tmp_path / "none.db"), "--reference", "previous"])
    assert missing.exit_code == 2 and "no request log at" in missing.stderr and "Hint:" in missing.stderr
    assert not (tmp_path / "x").exists()


def test_flags_beat_set_which_beats_the_recipe(runner, seeded, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"name": "sim", "seed": 3, "monitor": {
        "reference": "training", "window": day("language_shift"), "model": "sim@1", "drift_share": 0.9,
        "classifier_decides": False, "output": str(tmp_path / "reports" / "{name}")}}))  # fmt: skip
    # the recipe alone: a share bound of 0.9 and no classifier rule do not call the language day drift ...
    relaxed = runner.invoke(app, ["monitor", "report", *_args(seeded), "--recipe", str(recipe), "--json"])
    payload = json.loads(relaxed.stdout)
    assert payload["drift"]["drift_share"] == 0.9 and not payload["drift"]["detected"]
    assert (tmp_path / "reports" / "sim" / "report.json").is_file()  # monitor.output with {name}
    manifest = json.loads((tmp_path / "reports" / "sim" / "manifest.json").read_text())
    assert manifest["recipe"]["monitor"]["drift_share"] == 0.9
    # ... --set puts the bound back, and a --window flag moves the window over the recipe's and --set's
    strict = runner.invoke(app, ["monitor", "report", *_args(seeded), "--recipe", str(recipe), "--set",
                                 "monitor.drift_share=0.5", "--set", f"monitor.window={day('no_drift')}", "--window",
                                 day("language_shift"), "--json"])  # fmt: skip
    assert strict.exit_code == 1 and json.loads(strict.stdout)["drift"]["detected"]
    assert json.loads(strict.stdout)["window"]["start"].startswith("2026-11-03")


def test_record_event_writes_retrain_recommended_with_the_evidence(runner, seeded, tmp_path):
    result = runner.invoke(app, ["monitor", "report", *_args(seeded, "--model", "sim@1", "--reference", "training",
                                 "--window", day("longer_inputs"), "--out", str(tmp_path / "r"), "--record-event",
                                 "--json")])  # fmt: skip
    assert result.exit_code == 1
    event_id = json.loads(result.stdout)["event_id"]
    [event] = [e for e in Registry(seeded / "registry.db").events("sim") if e.id == event_id]
    assert event.action == "retrain_recommended" and event.to_version == 1
    evidence = json.loads(event.reason)
    assert "source_chars" in evidence["drifted_features"] and evidence["report"].endswith("report.html")
    listed = runner.invoke(app, ["models", "events", "sim", "--registry", str(seeded / "registry.db"), "--json"])
    assert any(e["action"] == "retrain_recommended" for e in json.loads(listed.stdout))


def test_watch_posts_the_change_and_exits_with_the_last_state(runner, seeded, tmp_path):
    receiver = Receiver()
    try:
        result = runner.invoke(app, ["monitor", "watch", *_args(seeded, "--model", "sim@1", "--reference", REFERENCE,
                                     "--window", day("regressed_model"), "--interval", "1s", "--max-ticks", "2",
                                     "--webhook", receiver.url, "--metrics-port", "0", "--no-events", "--json")])  # fmt: skip
    finally:
        receiver.close()
    assert result.exit_code == 1, result.stderr
    ticks = [json.loads(line) for line in result.stdout.splitlines()]
    assert [t["state"] for t in ticks] == ["quality_alert", "quality_alert"]
    assert [t["changed"] for t in ticks] == [True, False]
    assert ticks[0]["delivery"]["ok"] and ticks[1]["delivery"] is None
    assert len(receiver.bodies) == 1 and receiver.bodies[0]["cvml"]["state"] == "quality_alert"
    assert "gauges on http://127.0.0.1:" in result.stderr
    bad = runner.invoke(app, ["monitor", "watch", *_args(seeded, "--webhook", "ftp://x", "--max-ticks", "1")])
    assert bad.exit_code == 2 and "monitor.webhook" in bad.stderr


def test_export_reports_what_it_wrote(runner, seeded, tmp_path):
    result = runner.invoke(app, ["monitor", "export", "--db", str(seeded / "requests.db"), "--window",
                                 "2026-11-01..2026-11-07", "--out", str(tmp_path / "raw" / "prod.jsonl")])  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "Exported" in result.stdout and "user edit(s)" in result.stdout and "cvml curate --input" in result.stdout
    again = runner.invoke(app, ["monitor", "export", "--db", str(seeded / "requests.db"), "--out",
                                str(tmp_path / "raw" / "prod.jsonl")])  # fmt: skip
    assert again.exit_code == 2 and "exists" in again.stderr


def test_monitor_help_lists_the_three_commands(runner):
    result = runner.invoke(app, ["monitor", "--help"])
    assert result.exit_code == 0
    for command in ("report", "watch", "export"):
        assert command in result.stdout + result.stderr
