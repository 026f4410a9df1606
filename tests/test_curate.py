"""`cvml curate` end to end on the synthetic raw data: the planted problems are found
(exact counts), the books balance, splits never share a person, outputs are audited."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from cvml.curate import curate, forget
from cvml.curate.output import SPLITS
from cvml.data.records import load_records, validate_row
from cvml.errors import DataError
from cvml.manifest import sha256_file
from cvml.recipe import CurateSpec

EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    from cvml.tiny.synth import write_synthetic_dataset

    return Path(write_synthetic_dataset(tmp_path_factory.mktemp("raw"), n_people=200, seed=3)["path"])


@pytest.fixture(scope="module")
def raw_rows(raw) -> list[dict]:
    return [json.loads(line) for line in raw.read_text().splitlines()]


@pytest.fixture(scope="module")
def curated(tmp_path_factory, raw):
    out = tmp_path_factory.mktemp("curated") / "cv"
    spec = CurateSpec(inputs=[str(raw)], normalize={"max_source_tokens": 10_000, "max_target_tokens": 10_000})
    # Module scope runs before the per-test CVML_HOME: give curate (index key, suppression list) its own.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CVML_HOME", str(tmp_path_factory.mktemp("home")))
        return curate(spec, out), out


def _planted(rows, prefix: str) -> Counter:
    return Counter(tag for r in rows for tag in (r.get("meta") or {}).get("planted", []) if tag.startswith(prefix))


def _split_rows(out: Path) -> dict[str, list[dict]]:
    return {s: pq.read_table(out / f"{s}.parquet").to_pylist() for s in SPLITS}


def test_books_balance(curated, raw_rows):
    result, _ = curated
    assert result.input_rows == len(raw_rows)
    assert result.balanced
    assert result.input_rows == sum(result.kept.values()) + sum(result.quarantined.values()) + sum(result.removed.values())


def test_malformed_rows_are_quarantined_exactly(curated, raw_rows):
    result, out = curated
    malformed = sum(1 for r in raw_rows if validate_row(r)[0] is None)
    assert malformed == sum(_planted(raw_rows, "malformed:").values()) > 0
    assert result.quarantined == {"schema": malformed}
    entries = [json.loads(line) for line in (out / "quarantine.jsonl").read_text().splitlines()]
    assert len(entries) == malformed and all(e["reason"] and e["line"] for e in entries)


def test_planted_quality_problems_are_filtered_exactly(curated, raw_rows):
    result, _ = curated
    planted = _planted(raw_rows, "quality:")
    assert result.removed.get("filter", 0) == sum(planted.values()) > 0


def test_planted_duplicates_are_removed_exactly(curated, raw_rows):
    result, out = curated
    ledger = [json.loads(line) for line in (out / "removed.jsonl").read_text().splitlines()]
    dups = {e["id"]: e for e in ledger if e["stage"].startswith("dedup")}
    assert len(dups) == result.removed.get("dedup_exact", 0) + result.removed.get("dedup_near", 0)
    pairs = [(r["id"], r["meta"]["dup_of"]) for r in raw_rows if {"dup:exact", "dup:near"} & set(r["meta"]["planted"])]
    assert len(pairs) == sum(_planted(raw_rows, "dup:").values()) > 0
    # Exactly one row of every planted pair goes: the later one in the input (dedup keeps the first).
    assert all((copy in dups) != (original in dups) for copy, original in pairs)
    in_pairs = {i for pair in pairs for i in pair}
    natural = [e for i, e in dups.items() if i not in in_pairs]
    # Template rows of two people can coincide by chance; each such removal names what it
    # duplicates and how similar it is.
    assert len(natural) <= 0.05 * len(dups)
    for entry in dups.values():
        assert entry["kept_id"] and "duplicate of" in entry["reason"]
        if entry["stage"] == "dedup_near":
            assert float(re.search(r"jaccard ([0-9.]+)", entry["reason"]).group(1)) >= 0.85


def test_pii_is_redacted_with_typed_placeholders(curated, raw_rows):
    result, out = curated
    rows = [r for split in _split_rows(out).values() for r in split]
    assert not any(EMAIL.search(r["source_text"] + r["target"]) for r in rows)
    planted = _planted(raw_rows, "pii:")
    assert result.pii.get("EMAIL", 0) >= planted["pii:email"] > 0
    assert result.pii.get("PHONE", 0) >= planted["pii:phone"] > 0
    assert any("<EMAIL_1>" in r["source_text"] for r in rows)
    # The quarantine holds malformed rows that never reached the PII stage: redacted too.
    assert not EMAIL.search((out / "quarantine.jsonl").read_text())


def test_splits_are_group_disjoint_and_readable_by_finetune(curated):
    result, out = curated
    groups = {s: {r["group"] for r in rows} for s, rows in _split_rows(out).items()}
    assert not groups["train"] & groups["validation"] and not groups["train"] & groups["test"]
    assert not groups["validation"] & groups["test"]
    total = sum(result.kept.values())
    assert 0.7 < result.kept["train"] / total < 0.9
    records, quarantine = load_records(out, "validation")
    assert len(records) == result.kept["validation"] and not quarantine
    assert isinstance(records[0].meta, dict)


def test_manifest_hashes_inputs_and_outputs(curated, raw):
    result, out = curated
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["inputs"]["input_0"]["sha256"] == sha256_file(raw)
    for split in SPLITS:
        assert manifest["outputs"][split]["sha256"] == sha256_file(out / f"{split}.parquet")
        assert manifest["outputs"][split]["rows"] == result.kept[split]
    assert manifest["counts"]["input_rows"] == result.input_rows
    report = json.loads((out / "report.json").read_text())
    assert report["balanced"] and report["report_version"] == 1
    assert (out / "lengths.png").stat().st_size > 1000
    assert "| quarantined | schema |" in (out / "report.md").read_text()


def test_split_is_stable_when_rows_are_appended(tmp_path, raw, raw_rows):
    first = tmp_path / "first.jsonl"
    first.write_text("".join(json.dumps(r) + "\n" for r in raw_rows[: len(raw_rows) // 2]))
    spec = lambda inputs: CurateSpec(inputs=inputs, dedup={"enabled": False})  # noqa: E731
    curate(spec([str(first)]), tmp_path / "a")
    curate(spec([str(raw)]), tmp_path / "b")
    where = lambda out: {r["id"]: s for s, rows in _split_rows(out).items() for r in rows}  # noqa: E731
    a, b = where(tmp_path / "a"), where(tmp_path / "b")
    assert len(b) > len(a) > 0
    assert all(b[i] == a[i] for i in a)


def test_decontamination_drops_rows_overlapping_the_eval_set(tmp_path, raw, raw_rows):
    clean = [r for r in raw_rows if validate_row(r)[0] is not None and not r["meta"]["planted"]]
    eval_file = tmp_path / "eval.jsonl"
    eval_file.write_text("".join(json.dumps(r) + "\n" for r in clean[:5]))
    result = curate(CurateSpec(inputs=[str(raw)], decontaminate={"eval_sets": [str(eval_file)], "ngram": 8}), tmp_path / "d")
    assert result.removed["decontaminate"] >= 5
    manifest = json.loads((tmp_path / "d" / "manifest.json").read_text())
    assert manifest["inputs"]["eval_set_0"]["sha256"] == sha256_file(eval_file)


def test_forget_by_group_and_by_email(tmp_path, raw, raw_rows):
    out = tmp_path / "f"
    curate(CurateSpec(inputs=[str(raw)]), out)
    kept = {r["group"]: r for rows in _split_rows(out).values() for r in rows}
    group = sorted(kept)[0]
    result = forget(out, groups=[group], reason="user request #1")
    assert sum(result.rows_removed.values()) >= 1
    assert group not in {r["group"] for rows in _split_rows(out).values() for r in rows}
    manifest = json.loads((out / "manifest.json").read_text())
    event = manifest["erasures"][-1]
    assert event["groups"] == [group] and event["reason"] == "user request #1"
    for split in SPLITS:
        assert manifest["outputs"][split]["sha256"] == sha256_file(out / f"{split}.parquet")

    # By email: the text holds <EMAIL_1> only, the keyed-hash index finds the person.
    with_email = [r for r in raw_rows if "pii:email" in r["meta"]["planted"] and r.get("group") in kept and r["group"] != group]
    email = EMAIL.search(with_email[0]["source_text"]).group(0)
    result = forget(out, match=email.upper())
    assert with_email[0]["group"] in result.groups
    assert email not in json.dumps(json.loads((out / "manifest.json").read_text()))
    with pytest.raises(DataError, match="no row of the dataset matches"):
        forget(out, groups=["no-such-person"])


def test_readers_csv_parquet_and_column_mapping(tmp_path):
    import pyarrow as pa

    rows = [{"uid": f"x{i}", "kind": "rewrite_bullet", "before": f"Helped with the migration of {i} services to AWS",
             "after": f"Migrated {i} services to AWS", "person": f"p{i}", "origin": "import"} for i in range(1, 40)]
    csv_file = tmp_path / "raw.csv"
    csv_file.write_text("uid,kind,before,after,person,origin\n" + "".join(
        f"{r['uid']},{r['kind']},{r['before']},{r['after']},{r['person']},{r['origin']}\n" for r in rows))
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "raw.parquet")
    columns = {"id": "uid", "task": "kind", "source_text": "before", "target": "after", "group": "person"}
    for name in ("raw.csv", "raw.parquet"):
        result = curate(CurateSpec(inputs=[str(tmp_path / name)], columns=columns, dedup={"near": False}), tmp_path / name.replace(".", "_"))
        assert sum(result.kept.values()) == 39 and result.balanced
        kept = [r for rows_ in _split_rows(tmp_path / name.replace(".", "_")).values() for r in rows_]
        assert json.loads(kept[0]["meta"])["extra"] == {"origin": "import"}


def test_unparseable_input_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text('id,task\n"r1,rewrite_bullet\n')
    with pytest.raises(DataError, match=r"bad.csv:\d+"):
        curate(CurateSpec(inputs=[str(bad)]), tmp_path / "o")
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(b'{"id": "a"}\n{"id": "caf\xe9"}\n')
    with pytest.raises(DataError, match=r"latin.jsonl:2: not UTF-8"):
        curate(CurateSpec(inputs=[str(latin)]), tmp_path / "o2")


def test_refuses_to_overwrite_a_folder_it_did_not_write(tmp_path, raw):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(DataError, match="not a cvml dataset"):
        curate(CurateSpec(inputs=[str(raw)]), precious)


def test_pii_index_finds_values_in_other_formats_and_stores_no_value(tmp_path, cvml_home):
    from cvml.curate.pii_index import INDEX_FILE, PiiIndex

    index = PiiIndex.create(tmp_path)
    index.add("PHONE", "020 7946 0958", "p1")
    index.add("EMAIL", "Jane.Doe@Example.com", "p2")
    index.close()
    lookup = PiiIndex.open(tmp_path)
    assert lookup.groups_for("+44 20 7946 0958") == {"p1"}
    assert lookup.groups_for("jane.doe@example.com") == {"p2"}
    assert lookup.groups_for("someone@else.com") == set()
    stored = (tmp_path / INDEX_FILE).read_text()
    assert "7946" not in stored and "jane" not in stored.lower()
    # The key is not beside the index (a copy of the folder must not answer guesses).
    assert not list(tmp_path.glob("*.key"))
    (key,) = (cvml_home / "keys").iterdir()
    assert key.stat().st_mode & 0o077 == 0
