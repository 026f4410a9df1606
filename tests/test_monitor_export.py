"""`cvml monitor export`: production requests back into training — redacted text, user edits
as targets, people kept together — and `cvml curate` reading what it wrote."""

from __future__ import annotations

import json
import re
import stat
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from cvml.cli.main import app
from cvml.errors import MonitorError
from cvml.monitor.export import export_rows
from cvml.monitor.simulate import SCENARIOS, request_pool, simulate, write_log
from cvml.windows import Window

DAY = Window(datetime(2026, 11, 1, tzinfo=timezone.utc), datetime(2026, 11, 2, tzinfo=timezone.utc))
EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")


@pytest.fixture
def log(tmp_path):
    pool = request_pool(seed=4, n_people=200)  # with the generator's planted PII
    traffic = replace(SCENARIOS["no_drift"], feedback_share=0.6, fabrication_rate=0.1, edit_share=0.4)
    entries, feedback = simulate(pool, 300, traffic, DAY, seed=9)
    path = tmp_path / "requests.db"
    write_log(path, entries, feedback)
    return path, entries, {f["request_id"]: f for f in feedback}


def test_export_keeps_what_users_kept_with_their_edits_as_targets(log, tmp_path):
    path, entries, feedback = log
    result = export_rows(path, DAY, tmp_path / "raw" / "from-prod.jsonl")
    rows = [json.loads(line) for line in (tmp_path / "raw" / "from-prod.jsonl").read_text().splitlines()]
    c = result.counts
    assert result.rows == len(rows) == c["target_user_edit"] + c["target_accepted_output"] > 0
    assert c["requests"] == 300 == result.rows + c["no_text"] + c["failed"] + c["unsplit"] + c["flagged"] + c["not_accepted"]
    by_id = {e.request_id: e for e in entries}
    edits = [r for r in rows if r["meta"]["target_from"] == "user_edit"]
    assert edits and all(r["target"].endswith("delivered on schedule.") for r in edits)
    for row in rows:
        rid = row["meta"]["request_id"]
        assert row["id"] == f"prod-{rid}" and row["task"] == by_id[rid].task
        assert feedback[rid]["accepted"] or feedback[rid]["edited_text"]
        assert row["group"].startswith("user-") and by_id[rid].user_id not in row["group"]  # hashed, never the id
        if by_id[rid].task == "tailor_section":
            assert row["job_description"]
    text = (tmp_path / "raw" / "from-prod.jsonl").read_text()
    assert not EMAIL.search(text)  # the log's redaction holds: placeholders only
    assert any(EMAIL.search(e.input_text) for e in entries)  # ... though users sent e-mail addresses
    assert stat.S_IMODE((tmp_path / "raw" / "from-prod.jsonl").stat().st_mode) == 0o600
    manifest = json.loads((tmp_path / "raw" / "from-prod.manifest.json").read_text())
    assert manifest["kind"] == "monitor-export" and manifest["rows"] == result.rows and manifest["include"] == "accepted"

    edited = export_rows(path, DAY, tmp_path / "edits.jsonl", include="edited")
    assert edited.rows == c["target_user_edit"]
    everything = export_rows(path, DAY, tmp_path / "all.jsonl", include="all")
    assert everything.rows > result.rows and everything.counts["target_output"] > 0
    with pytest.raises(MonitorError, match="exists"):
        export_rows(path, DAY, tmp_path / "edits.jsonl", include="edited")
    assert export_rows(path, DAY, tmp_path / "edits.jsonl", include="edited", overwrite=True).rows == edited.rows


def test_flagged_outputs_are_left_out_unless_the_user_edited_them(log, tmp_path):
    path, entries, feedback = log
    result = export_rows(path, DAY, tmp_path / "out.jsonl", include="all")
    kept = {json.loads(line)["meta"]["request_id"] for line in (tmp_path / "out.jsonl").read_text().splitlines()}
    blocked = {e.request_id for e in entries if e.checks and e.checks["guard"]["action"] == "blocked"}
    assert blocked and result.counts["flagged"] > 0
    for rid in blocked:
        assert (rid in kept) == bool(feedback.get(rid, {}).get("edited_text"))


def test_export_refuses_what_it_cannot_use(tmp_path):
    pool = request_pool(seed=4, n_people=50)
    entries, _ = simulate(pool, 40, SCENARIOS["no_drift"], DAY, seed=1)
    silent = tmp_path / "silent.db"
    write_log(silent, entries, [], log_text="none")
    with pytest.raises(MonitorError, match="keeps no text") as caught:
        export_rows(silent, DAY, tmp_path / "x.jsonl")
    assert "log_text: redacted" in caught.value.hint
    with pytest.raises(MonitorError, match="no request to /v1/cv/rewrite"):
        export_rows(silent, Window(DAY.end, DAY.end + timedelta(days=1)), tmp_path / "y.jsonl")
    with pytest.raises(MonitorError, match="unknown --include"):
        export_rows(silent, DAY, tmp_path / "z.jsonl", include="some")


def test_export_then_curate_reads_it(runner, log, tmp_path):
    path, _, _ = log
    exported = runner.invoke(app, ["monitor", "export", "--db", str(path), "--window", "2026-11-01..2026-11-01",
                                   "--out", str(tmp_path / "raw.jsonl"), "--json"])  # fmt: skip
    assert exported.exit_code == 0, exported.stderr
    payload = json.loads(exported.stdout)
    curated = runner.invoke(app, ["curate", "--input", payload["path"], "--out", str(tmp_path / "data"), "--json"])
    assert curated.exit_code == 0, curated.stderr
    report = json.loads(curated.stdout)
    assert report["input_rows"] == payload["rows"]
    assert sum(report["quarantined"].values()) == 0  # every exported row is a valid record
    assert sum(report["kept"].values()) > 0
    import pyarrow.parquet as pq

    kept = [row for split in ("train", "validation", "test") for row in pq.read_table(tmp_path / "data" / f"{split}.parquet").to_pylist()]
    assert any(row["target"].endswith("delivered on schedule.") for row in kept)  # a user's edit, now a target
    groups = {}
    for split in ("train", "validation", "test"):
        for row in pq.read_table(tmp_path / "data" / f"{split}.parquet").to_pylist():
            groups.setdefault(row["group"], set()).add(split)
    assert all(len(splits) == 1 for splits in groups.values())  # one user never spans two splits
