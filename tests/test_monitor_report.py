"""`cvml monitor`'s library end to end on seeded request logs: each detector on the day that
has its drift, on SQLite and on Postgres (the same code through the storage layer); the
reference kinds; and every bad input with its clear message."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from monitor_data import REFERENCE, day, seed_log

from cvml.errors import MonitorError
from cvml.monitor import Monitor
from cvml.monitor.report import write_report
from cvml.monitor.simulate import SCENARIOS, request_pool, simulate, write_log
from cvml.recipe import MonitorSpec
from cvml.registry import Registry
from cvml.windows import Window

FOREIGN = {"mit", "con", "avec", "für", "des", "del", "und", "les", "los", "el"}


def report(reference: str, name: str, **spec) -> object:
    return Monitor(MonitorSpec(reference=reference, window=day(name), model="sim@1", **spec), seed=7).report()


@pytest.mark.integration  # seconds: the detectors over a month of simulated logs
def test_each_detector_fires_on_its_day_and_only_there(store_backend, tmp_path):
    seed_log(None, None, tmp_path)

    calm = report(REFERENCE, "no_drift")
    assert calm.state == "ok" and calm.exit_code == 0
    assert calm.drift.share < 0.5 and not calm.quality.alerts
    assert calm.reference.kind == "log" and len(calm.reference.rows) == 1200 and calm.current_requests == 400
    assert {f.threshold_source for f in calm.drift.features if f.drifted is not None} - {None} == {"calibrated"}

    language = report(REFERENCE, "language_shift")
    assert language.drift.detected and language.exit_code == 1
    assert {"language", "oov_rate", "input_text"} <= set(language.drift.drifted)
    lang = language.drift.feature("language")
    assert lang.reference == {"en": 1.0} and lang.current["en"] < 0.7
    assert FOREIGN & {w["word"] for w in language.drift.classifier.words["current"]}

    longer = report(REFERENCE, "longer_inputs")
    assert "share" in longer.drift.rules
    assert {"source_chars", "job_description_chars", "source_tokens"} <= set(longer.drift.drifted)
    chars = longer.drift.feature("source_chars")
    assert chars.current["median"] > 1.5 * chars.reference["median"]

    industry = report(REFERENCE, "industry_shift")
    assert "classifier" in industry.drift.rules and industry.drift.classifier.auc > 0.7
    assert not {"language", "task"} & set(industry.drift.drifted)  # the words moved, not the language or task mix

    regressed = report(REFERENCE, "regressed_model")
    assert regressed.state == "quality_alert" and not regressed.drift.detected
    alert = {(t.rate, t.against): t for t in regressed.quality.alerts}
    fabrication = alert[("fabrication_rate", "reference")]
    assert fabrication.current > 2 * fabrication.baseline and fabrication.diff_low > 0

    errors = report(REFERENCE, "errors")
    assert {("error_rate", "reference"), ("timeout_rate", "reference"), ("error_rate", "limit")} <= {
        (t.rate, t.against) for t in errors.quality.alerts
    }
    assert errors.state == "quality_alert"

    # Against the model's own training data: the training split, its vocabulary and tokenizer
    trained = report("training", "no_drift")
    assert trained.reference.kind == "training" and trained.state == "ok"
    assert trained.drift.feature("oov_rate").drifted is not None and trained.drift.feature("source_tokens").n_current > 0
    assert {t.against for t in trained.quality.tests} == {"limit"}  # no quality figures in a training split
    foreign = report("training", "language_shift")
    assert foreign.drift.detected and {"language", "oov_rate"} <= set(foreign.drift.drifted)
    oov = foreign.drift.feature("oov_rate")
    assert oov.current["mean"] > 10 * max(oov.reference["mean"], 1e-3)


@pytest.mark.integration  # seconds: a month of simulated logs, the report and its plots
def test_a_report_folder_holds_json_html_pngs_and_a_manifest(tmp_path):
    seed_log(tmp_path / "requests.db", tmp_path / "registry.db", tmp_path)
    monitor = Monitor(MonitorSpec(reference="training", window=day("language_shift"), model="sim@1"),
                      log=tmp_path / "requests.db", registry=tmp_path / "registry.db", seed=1)  # fmt: skip
    result = monitor.report()
    files = write_report(result, tmp_path / "report", {"name": "t"})
    report_json = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report_json["schema"] == "cvml.monitor/1"
    assert report_json["verdict"]["state"] == "drift" and report_json["verdict"]["exit_code"] == 1
    assert report_json["model"]["ref"] == "sim@1" and report_json["reference"]["source"] == "train.jsonl"
    assert {f["name"] for f in report_json["drift"]["features"]} >= {"source_chars", "language", "input_text", "output_chars"}
    for name in ("distributions", "quality_over_time", "latency"):
        assert (tmp_path / "report" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (tmp_path / "report" / "report.html").read_text()
    assert 'id="verdict"' in html and "data:image/png;base64," in html
    assert "http://" not in html and "https://" not in html and "<script" not in html
    manifest = json.loads((tmp_path / "report" / "manifest.json").read_text())
    assert manifest["kind"] == "monitor" and manifest["inputs"]["reference"]["sha256"]
    assert manifest["verdict"]["state"] == "drift" and set(files) >= {"json", "html", "manifest"}
    # Only aggregates and words: no request's text is in the report
    text = json.dumps(report_json) + html
    for request in result.profiles[1].rows[:50]:
        assert request.source not in text


def test_bad_inputs_are_clear_errors(tmp_path):
    log = tmp_path / "requests.db"
    spec = MonitorSpec(reference="previous", window="2026-11-01..2026-11-01")
    with pytest.raises(MonitorError, match="no request log at"):
        Monitor(spec, log=log).report()
    start = datetime(2026, 11, 1, 9, tzinfo=timezone.utc)
    pool = request_pool(seed=1, n_people=60)
    entries, _ = simulate(pool, 20, SCENARIOS["no_drift"], Window(start, start + timedelta(hours=1)), seed=2)
    write_log(log, entries, [])
    with pytest.raises(MonitorError, match=r"no request to /v1/cv/rewrite in the window 2026-10-01"):
        Monitor(MonitorSpec(reference="previous", window="2026-10-01..2026-10-01"), log=log).report()
    with pytest.raises(MonitorError, match=r"holds 20 request\(s\); its tests need at least 30 \(monitor.min_rows\)") as small:
        Monitor(spec, log=log).report()
    assert "widen --window" in small.value.hint
    with pytest.raises(MonitorError, match=r"the reference log window .* holds 0 request\(s\)"):
        Monitor(MonitorSpec(reference="previous", window="2026-11-01..2026-11-01", min_rows=10), log=log).report()
    with pytest.raises(MonitorError, match="a training reference needs the model"):
        Monitor(MonitorSpec(window="2026-11-01..2026-11-01", min_rows=10), log=log).report()
    # A registered model that stores no reference (no manifest, no vocabulary, no tokenizer)
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "config.json").write_text("{}")
    Registry().register(bare, "bare", "base")
    with pytest.raises(MonitorError, match="no request to /v1/cv/rewrite .* was served by bare@1") as other:
        Monitor(MonitorSpec(reference="previous", window="2026-11-01..2026-11-01", min_rows=10, model="bare@1"),
                log=log).report()  # fmt: skip
    assert "sim@1 (20)" in other.value.hint
    later = Window(start + timedelta(days=1), start + timedelta(days=1, hours=1))
    write_log(log, simulate(pool, 20, replace(SCENARIOS["no_drift"], model_version="bare@1"), later, seed=3)[0], [])
    with pytest.raises(MonitorError, match="bare@1 has no stored reference") as missing:
        Monitor(MonitorSpec(window="2026-11-02..2026-11-02", min_rows=10, model="bare@1"), log=log).report()
    assert "--reference previous" in missing.value.hint
    with pytest.raises(MonitorError, match="no model named .nope. in the registry"):
        Monitor(MonitorSpec(window="2026-11-01..2026-11-01", model="nope@1"), log=log).report()


def test_a_log_without_text_is_monitored_on_sizes_and_rates_and_says_what_it_cannot_see(tmp_path):
    log = tmp_path / "requests.db"
    pool = request_pool(seed=1, n_people=200)
    day1 = Window(datetime(2026, 11, 1, tzinfo=timezone.utc), datetime(2026, 11, 2, tzinfo=timezone.utc))
    day2 = Window(day1.end, day1.end + timedelta(days=1))
    ref, _ = simulate(pool, 300, SCENARIOS["no_drift"], day1, seed=3)
    cur, _ = simulate(pool, 150, SCENARIOS["longer_inputs"], day2, seed=4)
    write_log(log, ref + cur, [], log_text="none")
    result = Monitor(MonitorSpec(reference="previous", window="2026-11-02..2026-11-02"), log=log).report()
    assert result.drift.feature("source_chars").drifted and result.drift.feature("job_description_chars").drifted
    for name in ("language", "non_letter_share", "input_text"):
        assert result.drift.feature(name).drifted is None and "no text" in result.drift.feature(name).skipped
    assert any("the log keeps no text" in note for note in result.notes)
    assert result.quality.scopes["all"]["fabrication_rate"].n > 0  # the checks' flags are kept without text
    assert result.quality.scopes["all"]["format_invalid_rate"].n == 0
