"""Decontamination: training texts that copy an eval text are caught, stock CV phrases
are not, and eval sets load from JSONL, Parquet and dataset folders."""

from __future__ import annotations

import json

import pytest

from cvml.curate.decontam import Decontaminator
from cvml.errors import DataError

EVAL = [
    "Led a cross-functional team of 12 to deliver the new billing platform two months early",
    "Reduced month-end close from ten days to six using Xero and automated reconciliations",
    "Built a KPI dashboard",
]


@pytest.fixture
def decontam() -> Decontaminator:
    return Decontaminator(EVAL)


def test_a_copied_eval_text_is_caught_whatever_its_case_and_punctuation(decontam):
    reason = decontam.check("LED a cross-functional team of 12, to deliver the new billing platform two months early!")
    assert reason is not None and "8-grams with the eval set" in reason
    assert "'led a cross functional team of 12 to" in reason


def test_a_text_that_shares_most_of_an_eval_text_is_caught(decontam):
    text = "Reduced month-end close from ten days to six using Xero and automated reconciliations at Acme"
    assert decontam.check(text)


def test_unrelated_text_and_a_stock_phrase_pass(decontam):
    assert decontam.check("Trained 8 new operatives in forklift operation and health and safety") is None
    stock = ("Mentored four junior analysts and led a cross-functional team of 12 to deliver the quarterly "
             "planning cycle, cutting review meetings and rework across three regional finance offices")
    assert decontam.check(stock) is None  # one shared 8-gram out of many
    assert Decontaminator(EVAL, min_overlap=0).check(stock)  # the classic any-shared-n-gram rule


def test_short_eval_texts_match_whole(decontam):
    assert decontam.check("built a KPI dashboard.") == "repeats the eval text 'built a kpi dashboard'"
    assert decontam.check("Built a KPI dashboard for sales") is None


def test_n_and_overlap_are_configurable():
    eval_texts = ["cut AWS costs by a third"]
    assert Decontaminator(eval_texts, n=3, min_overlap=0).check("We cut AWS costs sharply") == (
        "shares 1 of 3 3-grams with the eval set, e.g. 'cut aws costs'")
    assert Decontaminator(eval_texts, n=3).check("We cut AWS costs sharply") is None  # 1 of 3 is under half
    with pytest.raises(ValueError):
        Decontaminator([], n=0)


def _rows() -> list[dict]:
    return [{"id": "e1", "task": "rewrite_bullet", "source_text": EVAL[0], "target": EVAL[1], "group": "p1"},
            {"id": "e2", "source_text": EVAL[2], "target": 42}]  # off-schema rows still give their texts


def test_load_eval_texts_from_jsonl_parquet_and_a_dataset_folder(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    jsonl = tmp_path / "eval.jsonl"
    jsonl.write_text("\n".join(json.dumps(row) for row in _rows()) + "\n", encoding="utf-8")
    assert Decontaminator.load_eval_texts(jsonl) == EVAL

    folder = tmp_path / "dataset"
    folder.mkdir()
    rows = _rows()[:1]
    pq.write_table(pa.Table.from_pylist(rows), folder / "test.parquet")
    assert Decontaminator.load_eval_texts(folder) == EVAL[:2]


def test_an_unreadable_or_empty_eval_set_is_an_error(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(_rows()[0]) + "\n{not json\n", encoding="utf-8")
    with pytest.raises(DataError, match="line 2"):
        Decontaminator.load_eval_texts(bad)
    empty = tmp_path / "empty.jsonl"
    empty.write_text(json.dumps({"id": "x"}) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match="no source_text or target"):
        Decontaminator.load_eval_texts(empty)
    with pytest.raises(DataError):
        Decontaminator.load_eval_texts(tmp_path / "missing.jsonl")
