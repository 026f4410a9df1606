"""Evaluation (bench, quantize, abtest and train score here): metric values on fixed strings, batch-invariant greedy generation on the
tiny model, an end-to-end evaluation, and the bias probe run."""

from __future__ import annotations

import json

import pytest

from cvml.evaluation import bias_probe, quality
from cvml.evaluation.generation import generate_outputs
from cvml.evaluation.quality import (
    METRICS,
    aggregate,
    evaluate_quality,
    load_eval_records,
    score_example,
    score_outputs,
)
from cvml.prompts import render_prompt as build_prompt
from cvml.evaluation.textmetrics import FORMAT_PROBLEMS, first_word, format_problems, starts_with_action_verb
from cvml.data.records import Record, validate_row
from cvml.errors import DataError


def _record(task="rewrite_bullet", source="Worked on the release process", target="Automated the release process",
            job=None, rid="r1") -> Record:
    return Record(id=rid, task=task, source_text=source, job_description=job, target=target, group="g1")


def _synthetic(n_per_task: int = 2, seed: int = 3) -> list[Record]:
    """Clean synthetic records, n of each task, in a fixed order."""
    from cvml.tiny.synth import generate_records

    picked: dict[str, list[Record]] = {}
    for row in generate_records(n_people=12, seed=seed):
        record, _ = validate_row(row)
        if record and not row["meta"]["planted"] and len(picked.setdefault(record.task, [])) < n_per_task:
            picked[record.task].append(record)
    return [r for task in sorted(picked) for r in picked[task]]


# --- reference metrics ------------------------------------------------------------------------

def test_chrf_and_rouge_of_identical_and_disjoint_outputs():
    record = _record(target="Automated the release process with Jenkins, saving 6 hours a week")
    same = score_example(record, record.target)
    assert same["chrf"] == pytest.approx(100.0) and same["rouge_l"] == pytest.approx(1.0)
    disjoint = score_example(record, "zq xv")
    assert disjoint["chrf"] < 2.0 and disjoint["rouge_l"] == 0.0
    partial = score_example(record, "Automated the release process")
    assert 30 < partial["chrf"] < 100 and partial["rouge_l"] == pytest.approx(2 * 4 / (4 + 11))


def test_keyword_coverage_counts_the_job_ads_keywords_in_the_output():
    job = "Python Terraform Grafana Kubernetes"
    record = _record("tailor_section", "Platform Engineer | Acme\n- Built dashboards using Grafana", "x", job)
    assert score_example(record, "Built Grafana dashboards with Python")["keyword_coverage"] == pytest.approx(0.5)
    assert score_example(record, "Python, Terraform, Grafana and Kubernetes")["keyword_coverage"] == pytest.approx(1.0)
    assert score_example(record, "Nothing relevant here")["keyword_coverage"] == 0.0
    assert score_example(_record(), "Automated the release")["keyword_coverage"] is None  # no ad: not applicable


# --- action verbs and format ------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    "Led a team of 5 engineers", "- Automated the release process", "Automates the release process",
    "Leading the migration to Kubernetes", "Re-designed the billing service", "**Built** a billing service",
    "Optimising queries in PostgreSQL", "Renegotiated supplier contracts", "co-led the data platform",
])
def test_action_verb_start(text):
    assert starts_with_action_verb(text)


@pytest.mark.parametrize("text", [
    "Responsible for the release process", "Helped with onboarding", "Worked on dashboards",
    "Management of a team of 5", "Assisted with audits", "", "   ", "2019: joined the team",
])
def test_no_action_verb_start(text):
    assert not starts_with_action_verb(text)


def test_first_word_skips_bullet_marks_and_markup():
    assert first_word("\n  • **Shipped** 3 services") == "shipped"
    assert first_word("1. Cut costs") == "cut"


BULLET = "Automated the release process with Jenkins, saving 6 hours a week for the whole team"
SUMMARY = ("Data Analyst with 6 years of experience in SQL, Tableau and Python. Built weekly sales dashboards "
           "used by 40 managers and cut reporting time by 30% through automated data pipelines across teams.")


@pytest.mark.parametrize(("task", "output", "source", "expected"), [
    ("rewrite_bullet", BULLET, "", []),
    ("rewrite_bullet", "", "", ["empty"]),
    ("rewrite_bullet", "Led", "", ["too_short"]),
    ("rewrite_bullet", " ".join(["word"] * 60), "", ["too_long"]),
    ("rewrite_bullet", BULLET + "\n" + BULLET, "", ["multi_line"]),
    ("rewrite_bullet", BULLET + "<|im_end|>", "", ["template_token"]),
    ("rewrite_bullet", BULLET + " [/INST]", "", ["template_token"]),
    ("rewrite_bullet", BULLET + "\nuser", "", ["multi_line", "prompt_echo"]),
    ("rewrite_bullet", "Rewrite this CV bullet to be stronger: " + BULLET, "", ["prompt_echo"]),
    ("rewrite_bullet", BULLET + " <EMAIL_1>", "", ["placeholder"]),
    ("summary", SUMMARY, "", []),
    ("summary", "- " + SUMMARY, "", ["list_in_summary"]),
    ("tailor_section", SUMMARY, SUMMARY, []),
    ("tailor_section", "Data Analyst", SUMMARY, ["too_short"]),
    ("tailor_section", " ".join([SUMMARY] * 3), SUMMARY, ["too_long"]),
])
def test_format_problems(task, output, source, expected):
    assert format_problems(task, output, source) == expected
    assert set(expected) <= set(FORMAT_PROBLEMS)


# --- safety checks through the scorer ---------------------------------------------------------

def test_planted_fabrication_is_flagged_and_faithful_output_is_not():
    record = _record(source="Cut cloud costs by 12% at Northwind Labs using Kubernetes",
                     target="Cut cloud hosting costs by 12% using Kubernetes")
    planted = score_example(record, "Cut cloud costs by 45% at Google using Kubernetes, saving $2,000,000")
    assert planted["fabrication_rate"] == 1.0 and planted["n_claims"] >= 1
    assert planted["fabricated_claims"], "the claims found must be reported"
    assert json.dumps(planted["fabricated_claims"])
    faithful = score_example(record, "Cut cloud hosting costs by 12% at Northwind Labs using Kubernetes")
    assert faithful["fabrication_rate"] == 0.0 and faithful["fabricated_claims"] == []


def test_planted_email_leak_is_flagged_and_an_email_from_the_input_is_not():
    record = _record(source="Jane Doe | jane.doe@gmail.com\nWorked on the release process")
    leaked = score_example(record, "Automated the release process; contact omar.haddad@proton.me")
    assert leaked["pii_leak_rate"] == 1.0
    assert [leak["type"] for leak in leaked["pii_leaks"]] == ["EMAIL"]
    assert leaked["output"] == "Automated the release process; contact <EMAIL>"  # the report never holds it
    kept = score_example(record, "Automated the release process; contact jane.doe@gmail.com")
    assert kept["pii_leak_rate"] == 0.0


# --- aggregation ------------------------------------------------------------------------------

def test_aggregates_are_means_of_the_per_example_values():
    records = [
        _record(rid="a"), _record(rid="b"),
        _record("summary", "Role: Data Analyst; 6 years; SQL, Tableau", SUMMARY, rid="c"),
    ]
    outputs = ["Automated the release process", "", SUMMARY]
    result = score_outputs(records, outputs)
    m = result.metrics
    assert m["n"] == 3 and [row["id"] for row in result.per_example] == ["a", "b", "c"]
    for name in METRICS:
        values = [row[name] for row in result.per_example if row[name] is not None]
        assert m[name] == (pytest.approx(sum(values) / len(values)) if values else None)
    assert m["empty_rate"] == pytest.approx(1 / 3)
    assert m["action_verb_rate"] == pytest.approx(0.5)  # rewrite_bullet rows only: one of two
    assert m["keyword_coverage"] is None  # no record has a job ad
    assert result.by_task["rewrite_bullet"]["n"] == 2 and result.by_task["summary"]["n"] == 1
    assert "tailor_section" not in result.by_task
    assert result.target_metrics["n"] == 3 and result.target_metrics["empty_rate"] == 0.0
    json.dumps(result.to_dict())
    with pytest.raises(ValueError, match="2 outputs"):
        score_outputs(records, outputs[:2])
    assert aggregate([])["n"] == 0 and aggregate([])["chrf"] is None


# --- eval data --------------------------------------------------------------------------------

def test_load_eval_records_from_file_and_folder(tmp_path):
    rows = [_record(rid=f"r{i}").model_dump() for i in range(5)]
    (tmp_path / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    assert [r.id for r in load_eval_records(tmp_path, limit=3)] == ["r0", "r1", "r2"]
    assert len(load_eval_records(tmp_path / "test.jsonl")) == 5
    with pytest.raises(DataError, match="not found"):
        load_eval_records(tmp_path / "missing.jsonl")
    with pytest.raises(DataError, match="no validation"):
        load_eval_records(tmp_path, split="validation")
    (tmp_path / "empty.jsonl").write_text("", encoding="utf-8")
    with pytest.raises(DataError, match="no eval records"):
        load_eval_records(tmp_path / "empty.jsonl")
    (tmp_path / "bad.jsonl").write_text(json.dumps(rows[0]) + "\n" + json.dumps({"id": "x"}) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match="1 of 2 rows fail"):
        load_eval_records(tmp_path / "bad.jsonl")


# --- generation on the tiny model -------------------------------------------------------------

def test_prompts_are_built_exactly_like_training(loaded):
    from cvml.data.encode import render

    for record in _synthetic(1):
        assert build_prompt(loaded.tokenizer, record.task, record.source_text, record.job_description) == render(
            loaded.tokenizer, record
        )[0]


def test_batched_generation_equals_one_record_at_a_time(loaded):
    records = _synthetic(2)  # prompts of different lengths share batches
    progress = []
    batched = generate_outputs(
        loaded, records, max_new_tokens=12, batch_size=4, on_progress=lambda event: progress.append((event.done, event.total))
    )
    single = [generate_outputs(loaded, [r], max_new_tokens=12)[0] for r in records]
    assert batched == single
    assert len(batched) == len(records) and any(batched)
    assert progress == [(0, 6), (4, 6), (6, 6)]
    assert generate_outputs(loaded, [], max_new_tokens=4) == []


def test_prompt_beyond_the_context_is_a_data_error(loaded):
    with pytest.raises(DataError, match="context"):
        generate_outputs(loaded, _synthetic(1)[:1], max_new_tokens=loaded.context_length)


def test_evaluate_quality_end_to_end(loaded):
    records = _synthetic(2)
    result = evaluate_quality(loaded, records, max_new_tokens=12, limit=5)
    m = result.metrics
    assert m["n"] == 5 == len(result.per_example) == result.settings["n_records"]
    assert sum(v["n"] for v in result.by_task.values()) == 5
    assert 0.0 <= m["chrf"] <= 100.0 and 0.0 <= m["rouge_l"] <= 1.0
    for name in quality.FREE_METRICS:
        assert m[name] is None or 0.0 <= m[name] <= 1.0
    assert m["keyword_coverage"] is not None and m["action_verb_rate"] is not None  # the 5 span all three tasks
    assert len(result.samples) <= 2 * len(result.by_task)
    outputs = {row["id"]: row["output"] for row in result.per_example}
    assert all(sample["output"] == outputs[sample["id"]] for sample in result.samples)
    t = result.timing
    assert t["generate_s"] > 0 and t["total_s"] >= t["generate_s"] + t["score_s"] - 1e-3
    assert result.target_metrics["empty_rate"] == 0.0
    json.dumps(result.to_dict())
    with pytest.raises(DataError, match="no eval records"):
        evaluate_quality(loaded, [], max_new_tokens=4)


# --- bias probe -------------------------------------------------------------------------------

def test_bias_probe_without_names_data_names_the_setting(loaded, tmp_path):
    with pytest.raises(DataError) as info:
        bias_probe.run_bias_probe(loaded, tmp_path / "nowhere", max_new_tokens=4)
    assert "bench.bias_names_dir" in info.value.hint


def test_bias_probe_runs_on_the_tiny_model(loaded):
    from cvml.safety.bias import GROUPS, default_names_dir

    assert bias_probe.default_bias_names_dir() == default_names_dir()  # the data packaged with cvml
    assert (default_names_dir() / "resumes_to_rank.json").is_file()

    report = bias_probe.run_bias_probe(loaded, n_templates=1, max_new_tokens=8)
    assert report["n_cases"] == 1 * 2 * len(GROUPS) * 2  # template x tasks x groups x names per group
    assert set(report["per_group"]) == set(GROUPS) and all(g["n"] == 4 for g in report["per_group"].values())
    # The tiny model's 512-token context cannot take the probe's longest excerpts: they are cut to fit.
    assert report["max_chars"] in bias_probe.PROBE_MAX_CHARS[1:]
    assert report["timing"]["generate_s"] > 0 and isinstance(report["flagged"], bool)
    json.dumps(report)
