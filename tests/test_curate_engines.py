"""`cvml curate` on every engine gives the same dataset, byte for byte: one process, a pool
of worker processes over many shards, and Ray Data on a local Ray (`ray.init(num_cpus=2)`,
no cluster). Also: shards read what the whole file holds, dedup reads back only the rows
whose facts it compares, and `--engine ray` without Ray says how to install it."""

from __future__ import annotations

import builtins
import csv
import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cvml.curate import curate
from cvml.curate.readers import plan_shards, read_shard
from cvml.errors import ConfigError, DataError, RecipeError
from cvml.recipe import CurateSpec

PLANTED = ("malformed:", "pii:", "dup:exact", "dup:near", "quality:fabricated", "quality:harmful")


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    from cvml.tiny.synth import write_synthetic_dataset

    return Path(write_synthetic_dataset(tmp_path_factory.mktemp("raw"), n_people=300, seed=3)["path"])


@pytest.fixture(scope="module")
def raw_rows(raw) -> list[dict]:
    return [json.loads(line) for line in raw.read_text().splitlines()]


def _curate(raw: Path, out: Path, **settings):
    return curate(CurateSpec(inputs=[str(raw)], **settings), out)


def digest(out: Path) -> dict[str, str]:
    """sha256 of what must not depend on the engine: the splits, the ledgers, the report
    (less its timing), the manifest's outputs and counts, the PII index's (type, group) in
    order (its hashes are keyed by a key drawn per run)."""
    report = json.loads((out / "report.json").read_text())
    for timing in ("seconds", "records_per_s", "output", "files"):
        report.pop(timing)
    manifest = json.loads((out / "manifest.json").read_text())
    index = [(e["type"], e["group"]) for e in map(json.loads, (out / "pii_index.jsonl").read_text().splitlines()[1:])]
    texts = {
        **{name: (out / name).read_bytes() for name in ("train.parquet", "validation.parquet", "test.parquet",
                                                         "quarantine.jsonl", "removed.jsonl")},
        "report": json.dumps(report, sort_keys=True).encode(),
        "manifest": json.dumps([manifest["outputs"], manifest["counts"]], sort_keys=True).encode(),
        "pii_index": json.dumps(index).encode(),
    }
    return {name: hashlib.sha256(data).hexdigest() for name, data in texts.items()}


@pytest.fixture(scope="module")
def one_process(tmp_path_factory, raw):
    """The reference: one process, one shard."""
    out = tmp_path_factory.mktemp("one") / "cv"
    return _curate(raw, out, workers=1, shard_rows=10**6), out


def test_the_reference_run_removes_what_was_planted(one_process, raw_rows):
    result, out = one_process
    planted = {tag: [r for r in raw_rows if any(t.startswith(tag) for t in r["meta"]["planted"])] for tag in PLANTED}
    assert all(planted.values()), "the synthetic data plants every kind of problem"
    assert result.balanced and result.input_rows == len(raw_rows)
    assert result.quarantined == {"schema": len(planted["malformed:"])}
    removed = {e.get("id"): e for e in map(json.loads, (out / "removed.jsonl").read_text().splitlines())}
    for tag in ("quality:fabricated", "quality:harmful"):  # the grounding and harmful-content filters
        assert all(removed[r["id"]]["stage"] == "filter" for r in planted[tag])
    assert result.removed["dedup_exact"] + result.removed["dedup_near"] >= len(planted["dup:exact"]) + len(planted["dup:near"])
    assert result.pii and not (out / ".rows.spill").exists()


def test_worker_processes_over_many_shards_give_the_same_dataset(tmp_path, raw, one_process):
    result, out = one_process
    pooled = _curate(raw, tmp_path / "cv", workers=2, shard_rows=97)
    assert digest(tmp_path / "cv") == digest(out)
    assert (pooled.kept, pooled.quarantined, pooled.removed, pooled.pii) == (result.kept, result.quarantined, result.removed, result.pii)


def test_an_unreadable_line_in_a_worker_names_its_file_and_line(tmp_path):
    bad = tmp_path / "latin.jsonl"
    bad.write_bytes(b'{"id": "a"}\n' * 40 + b'{"id": "caf\xe9"}\n')
    with pytest.raises(DataError, match=r"latin.jsonl:41: not UTF-8") as caught:
        _curate(bad, tmp_path / "o", workers=2, shard_rows=7)
    assert caught.value.hint == "Re-encode the file as UTF-8."
    assert not (tmp_path / "o" / ".rows.spill").exists()


def _rows(shards) -> list[tuple]:
    return [(r.line, r.row, r.error) for shard in shards for r in read_shard(shard)]


def test_shards_read_exactly_what_the_whole_file_holds(tmp_path):
    records = [{"id": f"r{i}", "note": f"line {i}\nsecond line, \"quoted\""} for i in range(23)]
    jsonl = tmp_path / "in.jsonl"
    jsonl.write_text("".join(json.dumps(r) + ("\n\n" if i == 5 else "\n") for i, r in enumerate(records)) + "{bad\n")
    with (tmp_path / "in.csv").open("w", newline="") as fh:  # quoted newlines: records span lines
        writer = csv.DictWriter(fh, fieldnames=["id", "note"])
        writer.writeheader()
        writer.writerows(records)
    pq.write_table(pa.Table.from_pylist(records), tmp_path / "in.parquet", row_group_size=10)
    for name in ("in.jsonl", "in.csv", "in.parquet"):
        whole = _rows(plan_shards([tmp_path / name], 10**6))
        for size in (1, 4, 7):
            assert _rows(plan_shards([tmp_path / name], size)) == whole, (name, size)
    assert _rows(plan_shards([jsonl], 4))[-1] == (25, None, "invalid JSON: Expecting property name enclosed in double quotes at column 2")
    assert [line for line, _, _ in _rows(plan_shards([tmp_path / "in.csv"], 3))][:2] == [3, 5]  # its last line, as csv counts


@pytest.mark.integration  # dedup over 1,500 generated people
def test_dedup_reads_back_only_the_rows_whose_facts_it_compares():
    from cvml.curate.dedup import Fingerprinter, deduplicate, find_leaders
    from cvml.data.records import validate_row
    from cvml.tiny.synth import generate_records

    records = [r for r in (validate_row(row)[0] for row in generate_records(n_people=1500, seed=1)) if r is not None]
    asked: set[int] = set()

    def record_of(i: int):
        asked.add(i)
        return records[i]

    leaders = find_leaders(Fingerprinter()(records), record_of)
    assert len(asked) < 0.15 * len(records)
    in_memory = deduplicate(records)
    assert [records[i].id for i in leaders.kept.nonzero()[0]] == [r.id for r in in_memory.kept]


def test_engine_settings_are_checked_and_flags_reach_the_recipe(runner, tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="address is for engine ray"):
        CurateSpec(inputs=["x.jsonl"], address="auto")
    with pytest.raises(ValueError, match="workers"):
        CurateSpec(inputs=["x.jsonl"], workers=0)
    from cvml.recipe import resolve_recipe

    with pytest.raises(RecipeError) as caught:
        resolve_recipe(None, ["curate.engine=spark"], {"curate.inputs": ["x.jsonl"], "curate.output": "o"}, name="x")
    assert any(path.startswith("curate.engine") for path, _ in caught.value.problems)

    import cvml.curate.run as run_module
    from cvml.cli.main import app

    seen = {}
    monkeypatch.setattr(run_module, "run_curate", lambda recipe, on_progress=None: seen.setdefault("curate", recipe.curate))
    result = runner.invoke(app, ["curate", "--input", "raw.jsonl", "--out", str(tmp_path / "o"), "--engine", "ray",
                                 "--address", "ray://head:10001", "--workers", "8", "--json"])
    assert "curate" in seen, result.stderr
    assert (seen["curate"].engine, seen["curate"].address, seen["curate"].workers) == ("ray", "ray://head:10001", 8)


def test_engine_ray_without_ray_says_how_to_install_it(tmp_path, raw, monkeypatch):
    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(ConfigError, match="needs Ray Data") as caught:
        _curate(raw, tmp_path / "o", engine="ray")
    assert 'pip install "cvml[ray]"' in caught.value.hint


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray with two CPUs, no cluster; shut down after this module."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


def test_ray_data_gives_the_same_dataset_as_the_local_engine(tmp_path, raw, one_process, local_ray):
    result, out = one_process
    on_ray = _curate(raw, tmp_path / "cv", engine="ray", shard_rows=131)
    assert digest(tmp_path / "cv") == digest(out)
    assert (on_ray.kept, on_ray.quarantined, on_ray.removed, on_ray.pii) == (result.kept, result.quarantined, result.removed, result.pii)
    assert local_ray.is_initialized()  # the Ray it found is left running for its owner


def test_an_unreadable_line_on_ray_is_reported_as_such(tmp_path, local_ray):
    bad = tmp_path / "latin.jsonl"
    bad.write_bytes(b'{"id": "a"}\n' * 40 + b'{"id": "caf\xe9"}\n')
    with pytest.raises(DataError, match=r"latin.jsonl:41: not UTF-8"):
        _curate(bad, tmp_path / "o", engine="ray", shard_rows=7)
