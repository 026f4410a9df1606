"""Erasure that holds: keys apart from the data, people whose rows were all quarantined, a
suppression list that survives re-curation, exact typed matches behind a preview, a forget
that a crash cannot leave half done, and `cvml forget` across the dataset, run and report
folders, the registry and the request log."""

from __future__ import annotations

import importlib
import json
import os
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from cvml.cli.main import app
from cvml.curate import curate, forget
from cvml.curate.output import SPLITS
from cvml.errors import DataError
from cvml.manifest import sha256_file
from cvml.recipe import CurateSpec

JANE_EMAIL = "jane.doe@example.com"
JANE_PHONE = "+44 20 7946 0958"
QUINN_EMAIL = "quinn.harper@example.org"
_JANE_FACTS = (
    ("Helped with building the weekly sales dashboards in Tableau for about 40 managers",
     "Built weekly sales dashboards in Tableau used by 40 regional managers"),
    ("Was involved in cleaning up the customer churn data with Python, saving roughly 6 hours a week",
     "Automated churn data cleaning in Python, saving 6 hours per week"),
    ("Worked on a forecasting model in R for the inventory planning team of 9 people",
     "Developed an R inventory forecasting model adopted by a 9-person planning team"),
)


def _jane_rows() -> list[dict]:
    rows = []
    for i, (source, target) in enumerate(_JANE_FACTS, start=1):
        header = f"Jane Doe — Data Analyst\n{JANE_EMAIL} | {JANE_PHONE}\n" if i != 2 else f"{JANE_EMAIL}\n"
        rows.append({"id": f"jane-{i}", "task": "rewrite_bullet", "source_text": header + source, "target": target,
                     "group": "p-jane", "meta": {}})
    return rows


def _quinn_rows() -> list[dict]:
    """A person whose every row is malformed (an unknown task): all of them are quarantined.
    The name also stands in the target, where only the header's name can reveal it. One
    row has no group at all: only its email ties it to the person."""
    return [
        {"id": f"quinn-{i}", "task": "rewrite", "group": "p-quinn", "meta": {},
         "source_text": f"Quinn Harper — Platform Engineer\n{QUINN_EMAIL}\nHelped with moving about {n} services to AWS",
         "target": f"Quinn Harper migrated {n} services to AWS with Terraform"}
        for i, n in ((1, 12), (2, 30))
    ] + [{"id": "quinn-3", "task": "summary", "source_text": f"Write to {QUINN_EMAIL} for references", "target": 7}]


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    from cvml.tiny.synth import generate_records

    rows = generate_records(n_people=40, seed=5) + _jane_rows() + _quinn_rows()
    path = tmp_path_factory.mktemp("raw") / "raw.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def _curate(raw: Path, out: Path, **spec):
    return curate(CurateSpec(inputs=[str(raw)], **spec), out)


def _rows(out: Path) -> dict[str, list[dict]]:
    return {s: pq.read_table(out / f"{s}.parquet").to_pylist() for s in SPLITS}


def _groups(out: Path) -> set[str]:
    return {r["group"] for rows in _rows(out).values() for r in rows}


def _ledger(out: Path, name: str) -> list[dict]:
    return [json.loads(line) for line in (out / name).read_text(encoding="utf-8").splitlines()]


def _hashes(out: Path) -> dict[str, str]:
    return {p.name: sha256_file(p) for p in sorted(out.iterdir()) if p.is_file()}


# --- 7: keys apart from the data; private files -------------------------------------------------

def test_the_index_key_is_not_in_the_dataset_and_every_file_is_private(tmp_path, raw, cvml_home, monkeypatch):
    from cvml.curate.pii_index import PiiIndex

    chmodded: list[str] = []
    real_chmod = os.chmod
    monkeypatch.setattr(os, "chmod", lambda path, mode, *a, **k: (chmodded.append(str(path)), real_chmod(path, mode, *a, **k))[1])
    out = tmp_path / "d"
    _curate(raw, out)
    monkeypatch.setattr(os, "chmod", real_chmod)

    assert not [p.name for p in out.iterdir() if "key" in p.name]
    keys = list((cvml_home / "keys").iterdir())
    assert len(keys) == 1 and keys[0].stat().st_mode & 0o777 == 0o600
    assert (cvml_home / "keys").stat().st_mode & 0o777 == 0o700
    assert not [p for p in chmodded if p.endswith(".key")], "a key file is created 0600, never chmod-ed after"
    assert out.stat().st_mode & 0o777 == 0o700
    assert {p.name: p.stat().st_mode & 0o777 for p in out.iterdir()} == {p.name: 0o600 for p in out.iterdir()}
    assert PiiIndex.open(out).groups_for(JANE_EMAIL) == {"p-jane"}

    # A copy of the folder, where its key is not (another machine's CVML_HOME), cannot test guesses.
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    monkeypatch.setenv("CVML_HOME", str(tmp_path / "elsewhere"))
    with pytest.raises(DataError, match="key"):
        PiiIndex.open(copy)


def test_every_curation_draws_a_new_key_and_drops_the_old_one(tmp_path, raw, cvml_home):
    out = tmp_path / "d"
    _curate(raw, out, dedup={"near": False})
    first = {p.name for p in (cvml_home / "keys").iterdir()}
    _curate(raw, out, dedup={"near": False})
    second = {p.name for p in (cvml_home / "keys").iterdir()}
    assert len(first) == len(second) == 1 and first != second
    assert forget(out, match=JANE_PHONE).groups == ["p-jane"]


def test_the_index_key_can_be_a_secret_from_the_environment(tmp_path, raw, cvml_home, monkeypatch):
    from cvml.curate.pii_index import PiiIndex

    monkeypatch.setenv("CVML_PII_KEY", "correct horse battery staple 42")
    out = tmp_path / "d"
    _curate(raw, out, dedup={"near": False})
    assert not (cvml_home / "keys").exists() or not list((cvml_home / "keys").glob("pii*"))
    assert PiiIndex.open(out).groups_for(JANE_EMAIL) == {"p-jane"}
    monkeypatch.delenv("CVML_PII_KEY")
    with pytest.raises(DataError, match="CVML_PII_KEY"):
        PiiIndex.open(out)


# --- 9: quarantined people ----------------------------------------------------------------------

def test_a_person_whose_rows_were_all_quarantined_can_be_erased(tmp_path, raw):
    out = tmp_path / "d"
    _curate(raw, out, dedup={"near": False})
    ledger = (out / "quarantine.jsonl").read_text(encoding="utf-8")
    assert "p-quinn" in ledger
    assert "Quinn" not in ledger and "Harper" not in ledger and QUINN_EMAIL not in ledger

    entries = len(_ledger(out, "quarantine.jsonl"))
    result = forget(out, match=QUINN_EMAIL)
    assert result.groups == ["p-quinn"]
    assert sum(result.rows_removed.values()) == 0 and result.ledger_entries_removed >= 3
    ledger = _ledger(out, "quarantine.jsonl")
    assert len(ledger) == entries - 3 and "quinn" not in json.dumps(ledger)


# --- 10: re-curation keeps erased people out ----------------------------------------------------

def test_recurating_keeps_erased_people_out_and_keeps_the_erasure_record(tmp_path, raw, cvml_home):
    out = tmp_path / "d"
    first = _curate(raw, out, dedup={"near": False})
    assert "p-jane" in _groups(out)
    forget(out, match=JANE_EMAIL, reason="request #7")
    forget(out, match=QUINN_EMAIL, reason="request #8")

    again = _curate(raw, out, dedup={"near": False})
    assert "p-jane" not in _groups(out)
    assert again.removed.get("erased") == len(_jane_rows()) + len(_quinn_rows())
    assert again.balanced and again.input_rows == first.input_rows
    for name in ("quarantine.jsonl", "removed.jsonl", "pii_index.jsonl"):
        text = (out / name).read_text(encoding="utf-8")
        assert "p-jane" not in text and "p-quinn" not in text, name
    manifest = json.loads((out / "manifest.json").read_text())
    assert [e["reason"] for e in manifest["erasures"]] == ["request #7", "request #8"]

    # The list is kept outside any dataset: a new output folder is curated without them too.
    other = _curate(raw, tmp_path / "other", dedup={"near": False})
    assert "p-jane" not in _groups(tmp_path / "other") and other.removed.get("erased") == again.removed["erased"]
    suppressed = cvml_home / "erasure" / "suppressed.jsonl"
    assert suppressed.stat().st_mode & 0o777 == 0o600
    text = suppressed.read_text()
    assert "jane" not in text.lower() and "p-quinn" not in text


def test_with_redaction_off_the_value_is_still_found_exactly_and_kept_out(tmp_path, raw):
    out = tmp_path / "plain"
    _curate(raw, out, pii={"enabled": False}, dedup={"near": False})
    assert JANE_EMAIL in json.dumps(_rows(out))
    result = forget(out, match=QUINN_EMAIL.upper())  # quarantined, in plain text
    assert result.groups == ["p-quinn"] and result.ledger_entries_removed == 3
    # A value erased elsewhere is looked for even where nothing is redacted.
    other = tmp_path / "redacted"
    _curate(raw, other, dedup={"near": False})
    forget(other, match=JANE_EMAIL)
    again = _curate(raw, tmp_path / "plain2", pii={"enabled": False}, dedup={"near": False})
    assert "p-jane" not in _groups(tmp_path / "plain2") and again.removed["erased"] == 6


def test_a_suppression_list_whose_key_is_gone_stops_curation(tmp_path, raw, cvml_home):
    out = tmp_path / "d"
    _curate(raw, out, dedup={"near": False})
    forget(out, groups=["p-jane"])
    (cvml_home / "keys" / "erasure.key").unlink()
    with pytest.raises(DataError, match="suppression list"):
        _curate(raw, tmp_path / "again", dedup={"near": False})


# --- 11: exact typed matches, preview, --yes ----------------------------------------------------

def test_match_is_an_exact_typed_value_not_a_substring(tmp_path, raw):
    out = tmp_path / "d"
    _curate(raw, out, dedup={"near": False})
    before = _hashes(out)
    with pytest.raises(DataError, match="no row of the dataset matches"):
        forget(out, match="team")
    with pytest.raises(DataError, match="no row of the dataset matches"):
        forget(out, match="example.com")
    assert _hashes(out) == before
    assert forget(out, match="  Jane   DOE ").groups == ["p-jane"]


def test_cli_forget_shows_what_it_would_erase_and_needs_yes(runner, tmp_path, raw):
    out = tmp_path / "d"
    _curate(raw, out, dedup={"near": False})
    before = _hashes(out)
    preview = runner.invoke(app, ["curate", "forget", "--dataset", str(out), "--match", JANE_EMAIL])
    assert preview.exit_code == 1, preview.output
    assert "p-jane" in preview.stdout and "--yes" in preview.stderr
    assert _hashes(out) == before

    dry = runner.invoke(app, ["curate", "forget", "--dataset", str(out), "--match", JANE_EMAIL, "--dry-run", "--json"])
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.stdout)["groups"] == ["p-jane"] and _hashes(out) == before

    done = runner.invoke(app, ["curate", "forget", "--dataset", str(out), "--match", JANE_EMAIL, "--yes", "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["groups"] == ["p-jane"] and "p-jane" not in _groups(out)


# --- 12: atomic, resumable ----------------------------------------------------------------------

@pytest.mark.parametrize("hook, crash_at", [("_write_pending", 2), ("_commit_file", 1), ("_commit_file", 3)])
def test_a_forget_interrupted_midway_is_completed_by_a_rerun(tmp_path, raw, monkeypatch, hook, crash_at):
    forget_module = importlib.import_module("cvml.curate.forget")
    out = tmp_path / "d"
    _curate(raw, out, dedup={"near": False})
    real, calls = getattr(forget_module, hook), []

    def crash(*args, **kwargs):
        calls.append(args)
        if len(calls) == crash_at:
            raise RuntimeError("power cut")
        return real(*args, **kwargs)

    monkeypatch.setattr(forget_module, hook, crash)
    with pytest.raises(RuntimeError, match="power cut"):
        forget(out, match=JANE_EMAIL, reason="r1")
    monkeypatch.setattr(forget_module, hook, real)

    result = forget(out, match=JANE_EMAIL, reason="r1")  # the retry finishes it, it does not refuse
    assert result.groups == ["p-jane"] and result.resumed
    assert "p-jane" not in _groups(out)
    for name in ("quarantine.jsonl", "removed.jsonl", "pii_index.jsonl"):
        assert "p-jane" not in (out / name).read_text(encoding="utf-8"), name
    manifest = json.loads((out / "manifest.json").read_text())
    assert [e["groups"] for e in manifest["erasures"]] == [["p-jane"]]
    for split in SPLITS:
        assert manifest["outputs"][split]["sha256"] == sha256_file(out / f"{split}.parquet")
        assert manifest["outputs"][split]["rows"] == len(_rows(out)[split])
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["train.parquet", "validation.parquet", "test.parquet", "quarantine.jsonl", "removed.jsonl",
         "pii_index.jsonl", "report.json", "report.md", "lengths.png", "manifest.json"])
    assert {p.name: p.stat().st_mode & 0o777 for p in out.iterdir()} == {p.name: 0o600 for p in out.iterdir()}


def test_a_crash_before_any_rename_leaves_every_original_intact(tmp_path, raw, monkeypatch):
    forget_module = importlib.import_module("cvml.curate.forget")
    out = tmp_path / "d"
    _curate(raw, out, dedup={"near": False})
    before = _hashes(out)

    def crash(*args, **kwargs):
        raise RuntimeError("disk full")

    real = forget_module._commit_file
    monkeypatch.setattr(forget_module, "_commit_file", crash)
    with pytest.raises(RuntimeError):
        forget(out, match=JANE_EMAIL)
    after = _hashes(out)
    assert {name: after[name] for name in before} == before
    assert {n for n in after if n not in before} - {forget_module.JOURNAL} <= {n + ".erasing" for n in before}
    monkeypatch.setattr(forget_module, "_commit_file", real)
    # Curating again finishes the journaled erasure first: its record is kept, the person stays out.
    _curate(raw, out, dedup={"near": False})
    assert "p-jane" not in _groups(out)
    assert len(json.loads((out / "manifest.json").read_text())["erasures"]) == 1


# --- 13: one command, every copy ----------------------------------------------------------------

def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


@pytest.fixture
def artifacts(tmp_path, raw):
    """A curated dataset, a run, a bench, an abtest and a quantize folder mentioning Jane next to
    others, two registered models trained on her data (and one that was not), a request log."""
    from cvml.registry import Registry
    from cvml.serve.requestlog import LogEntry, RequestLog

    data = tmp_path / "data" / "cv"
    _curate(raw, data, dedup={"near": False})
    where = {r["group"]: (split, r) for split, rows in _rows(data).items() for r in rows}
    jane_split, jane = where["p-jane"]
    other = next(r for g, (s, r) in sorted(where.items()) if g != "p-jane")
    sample = lambda r: {"id": r["id"], "task": r["task"], "source_text": r["source_text"], "target": r["target"],
                        "output": "Built dashboards"}
    runs, bench, abtest = tmp_path / "runs", tmp_path / "bench", tmp_path / "abtest"
    _write_jsonl(runs / "r1" / "samples.jsonl", [sample(jane), sample(other)])
    _write_jsonl(runs / "r1" / "quarantine.jsonl", [
        {"source": "x.jsonl", "line": 3, "reason": "bad", "row": {"source_text": f"Reach me at {JANE_EMAIL}"}},
        {"source": "x.jsonl", "line": 4, "reason": "bad", "row": {"source_text": "someone else"}},
    ])
    (runs / "r1" / "final").mkdir()
    (runs / "r1" / "final" / "config.json").write_text("{}")
    (runs / "q1").mkdir()
    (runs / "q1" / "quantize_report.json").write_text(json.dumps({"quality": {"samples": [
        {**sample(jane), "source_model": "a", "quantized": "b", "same": False}, {**sample(other), "same": True}]}}))
    (runs / "q1" / "quantize_report.md").write_text(
        f"# Quantize\n\n## Answers side by side\n\n**rewrite_bullet** `{jane['id']}` — answers differ\n\n- input: x\n- target: y\n\n"
        f"**rewrite_bullet** `{other['id']}`\n\n- input: z\n- target: w\n")
    (bench / "b1").mkdir(parents=True)
    (bench / "b1" / "report.json").write_text(json.dumps({"schema": "cvml.bench/1", "samples": {
        "perf": {"1": [{"ttft_s": [0.1]}]}, "quality": [{"id": jane["id"], "chrf": 0.5}, {"id": other["id"], "chrf": 0.7}]}}))
    _write_jsonl(abtest / "a1" / "pairs.jsonl", [{"id": jane["id"], "a": "x", "b": "y"}, {"id": other["id"], "a": "x", "b": "y"}])
    (abtest / "a1" / "report.md").write_text(f"# A/B\n\nWorst example: {JANE_EMAIL} wrote it.\n\nVerdict: B wins.\n")

    registry = Registry()
    split_file = data / f"{jane_split}.parquet"
    trained = registry.register(runs / "r1" / "final", "cv", "finetune",
                                datasets=[{"path": str(split_file), "sha256": sha256_file(split_file), "role": "train"}])
    registry.register(runs / "q1", "cv", "quantized", parent=trained.ref)
    registry.register(runs / "r1" / "final", "unrelated", "finetune",
                      datasets=[{"path": "/elsewhere/train.parquet", "sha256": "0" * 64, "role": "train"}])
    with RequestLog() as log:
        for i, user in enumerate(["U", "U", "V"]):
            log.record(LogEntry(request_id=f"q{i}", endpoint="/v1/cv/rewrite", status=200, user_id=user, input_text="hi"))
    return {"data": data, "runs": runs, "bench": bench, "abtest": abtest, "jane": jane, "other": other}


def test_cvml_forget_reaches_every_copy_in_one_command(runner, artifacts):
    from cvml.registry import Registry
    from cvml.registry.erasure import erasure_marks
    from cvml.serve.requestlog import RequestLog

    a = artifacts
    args = ["forget", "--match", JANE_EMAIL, "--dataset", str(a["data"]), "--runs", str(a["runs"]),
            "--reports", str(a["bench"]), str(a["abtest"]), "--user-id", "U", "--reason", "ticket 12"]
    preview = runner.invoke(app, args)
    assert preview.exit_code == 1 and "--yes" in preview.stderr, preview.output
    assert "samples.jsonl" in preview.stdout and "cv@1" in preview.stdout
    assert "p-jane" in _groups(a["data"])

    result = runner.invoke(app, [*args, "--yes", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["dataset"]["groups"] == ["p-jane"]
    touched = {Path(f["path"]).name: f["removed"] for f in report["files"]}
    assert touched == {"samples.jsonl": 1, "quarantine.jsonl": 1, "quantize_report.json": 1, "quantize_report.md": 1,
                       "report.json": 1, "pairs.jsonl": 1, "report.md": 1}
    assert sorted(report["models"]) == ["cv@1", "cv@2"]
    assert report["request_log"]["deleted"] == 2

    jane, other = a["jane"]["id"], a["other"]["id"]
    for folder in (a["runs"], a["bench"], a["abtest"]):
        for path in folder.rglob("*.*"):
            text = path.read_text(encoding="utf-8")
            assert jane not in text and JANE_EMAIL not in text, path
    assert other in (a["runs"] / "r1" / "samples.jsonl").read_text()
    assert other in (a["bench"] / "b1" / "report.json").read_text()
    assert "Verdict: B wins." in (a["abtest"] / "a1" / "report.md").read_text()
    assert "p-jane" not in _groups(a["data"])

    marks = erasure_marks("cv@1")
    assert len(marks) == 1 and marks[0].note.startswith("trained on erased data since ")
    assert erasure_marks("cv@2")[0].via == "cv@1" and erasure_marks("unrelated@1") == []
    assert [e.action for e in Registry().events("cv")].count("erasure") == 2
    with RequestLog() as log:
        assert [r["request_id"] for r in log.query()] == ["q2"]

    # Run again (a retry after a crash would): nothing left to do, nothing breaks, no second mark.
    again = runner.invoke(app, [*args, "--yes", "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["files"] == [] and len(erasure_marks("cv@1")) == 1


def test_cvml_forget_without_anything_to_erase_says_so(runner, artifacts):
    result = runner.invoke(app, ["forget", "--match", "nobody@example.net", "--dataset", str(artifacts["data"]),
                                 "--runs", str(artifacts["runs"]), "--yes"])
    assert result.exit_code == 1 and "matches" in result.stderr


def test_registry_marks_on_sqlite_and_postgres(store_backend, tmp_path):
    from cvml.registry import Registry
    from cvml.registry.erasure import erased_data_note, mark_trained_on

    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text("{}")
    registry = Registry()
    trained = registry.register(model, "cv", "finetune", datasets=[{"path": "/d/train.parquet", "sha256": "a" * 64}])
    registry.register(model, "cv", "quantized", parent=trained.ref)
    registry.register(model, "other", "finetune", datasets=[{"path": "/d/train.parquet", "sha256": "b" * 64}])
    marks = mark_trained_on({"a" * 64: "/d/train.parquet"}, erasure_id="e1", reason="ticket 1")
    assert [(m.ref, m.via) for m in marks] == [("cv@1", None), ("cv@2", "cv@1")]
    assert mark_trained_on({"a" * 64: "/d/train.parquet"}, erasure_id="e1") == []  # idempotent
    assert erased_data_note("cv@2").startswith("trained on erased data since 20")
    assert erased_data_note("other@1") is None
    events = [e for e in registry.events("cv") if e.action == "erasure"]
    assert [e.to_version for e in events] == [1, 2] and "ticket 1" in events[0].reason
