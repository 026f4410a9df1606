"""Fabrication check: each kind of claim flagged when planted, each equivalent form and
legitimate rounding let through, ordinary capitalised words left alone, the generator's
own targets clean, and the dotin measurement (tests/data/cv-dotin-545) meeting its
targets."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from cvml.safety.fabrication import KINDS, check_fabrication, extract_claims
from cvml.tiny.synth import generate_records

ROOT = Path(__file__).resolve().parents[1]
DOTIN = ROOT / "tests" / "data" / "cv-dotin-545"


def flagged(output: str, source: str, job: str | None = None) -> list[tuple[str, str]]:
    return [(c.kind, c.text) for c in check_fabrication(output, source, job).claims]


@pytest.mark.parametrize("output, source, expected", [
    ("Led a team of 12 engineers", "Led a team of 5 engineers", [("number", "12")]),
    ("Cut costs by 40%", "Cut costs by 25%", [("percent", "40%")]),
    ("Saved $2.5M a year", "Saved $1.2M a year", [("money", "$2.5M")]),
    ("Data analyst at Acme (2016-2021)", "Data analyst at Acme (2018-2021)", [("year", "2016")]),
    ("Analyst with 10 years of experience", "Analyst with 6 years of experience", [("duration", "10 years")]),
    ("Senior engineer at Cisco Systems", "Senior engineer at Oracle", [("employer", "Cisco Systems")]),
    ("Analyst at Goldman Sachs", "Analyst", [("employer", "Goldman Sachs")]),
    ("Engineer | Air Canada | 2019-2021", "Engineer | 2019-2021", [("employer", "Air Canada")]),
    ("Graduated from Harvard University", "Graduated from Yale University", [("school", "Harvard University")]),
    ("Master of Science in Physics", "B.Sc. in Physics", [("degree", "Master of Science")]),
    ("PhD in Economics", "MSc Economics", [("degree", "PhD")]),
    ("Holds an MBA", "Finance analyst", [("degree", "MBA")]),
])
def test_each_kind_of_planted_claim_is_flagged(output, source, expected):
    assert flagged(output, source) == expected


@pytest.mark.parametrize("output, source", [
    ("Cut costs by 25%", "reduced costs by 25 percent"),
    ("Saved $1.2M", "saved 1,200,000 dollars"),
    ("Saved $1.2 million", "saved $1.2M"),
    ("Led a team of five", "led a team of 5"),
    ("Led a team of 5", "led a team of five people"),
    ("Worked there in 2019", "2019-2021 at the firm"),
    ("Started in 2019", "started 03/2019"),
    ("5 years of experience", "Experience: 60 months"),
    ("Engineer with 5 years in 2018", "engineer, 5 yrs since 2018"),
    ("Software engineer at Oracle", "ORACLE INDIA PVT LTD"),
    ("Engineer at Oracle India Pvt. Ltd.", "worked at oracle india"),
    ("Engineer at Acme Inc.", "Engineer at ACME"),
    ("Analyst at JPMorgan Chase", "Analyst, J.P. Morgan Chase & Co"),
    ("Joined Infosys in 2018", "Infosys Technologies Ltd, 2018"),
    ("Bachelor of Technology, Pune University", "B.Tech, University of Pune"),
    ("MBA", "Master of Business Administration"),
    ("Bachelor's degree in Computer Science", "BSc Computer Science"),
    ("Graduated from MIT", "Massachusetts Institute of Technology"),
    ("Graduated from Massachusetts Institute of Technology", "MIT graduate"),
    ("Contact <EMAIL_1> or <PHONE_1>", "a source"),
])
def test_equivalent_forms_are_supported(output, source):
    assert flagged(output, source) == []


@pytest.mark.parametrize("output, source, ok", [
    ("Grew revenue 25%", "grew revenue 24.6%", True),  # rounded to the written precision
    ("Grew revenue ~25%", "grew revenue 24.6%", True),
    ("Grew revenue 25%", "grew revenue roughly 25%", True),
    ("Saved $1.2M", "saved $1,234,567", True),
    ("Grew revenue 50%", "grew revenue 47%", False),  # rounding, but 6% off: not without a hedge
    ("Grew revenue by about 50%", "grew revenue 47%", True),
    ("Grew revenue by about 60%", "grew revenue 47%", False),
    ("5+ years of experience", "6 years of experience", True),  # a lower bound the input meets
    ("Over 8 years of experience", "6 years of experience", False),
    ("Cut the wait to under 2 hours", "cut the wait to 100 minutes", True),
    ("Cut the wait to under 2 hours", "cut the wait to 1 hour", False),
    ("7 years at Google", "Google 2015-2022", True),  # a year's length within the range spelled
    ("10 years at Google", "Google 2015-2022", False),
    ("Graduated in 2018", "graduated in 2019", False),  # years never round
])
def test_rounding_tolerance(output, source, ok):
    assert (flagged(output, source) == []) is ok


def test_ordinary_capitalised_words_are_not_claims():
    text = ("PROFESSIONAL SUMMARY\nResults-Driven Senior Data Engineer skilled in Python, SQL and Power BI.\n"
            "Key Skills: Stakeholder Management | Machine Learning\n- Led the migration to Microsoft Azure "
            "using Google Analytics and Amazon Web Services")
    assert extract_claims(text) == []
    assert check_fabrication(text, "data engineer").flagged is False


def test_the_job_description_supports_entities_and_numbers_but_not_durations():
    job = "Acme Analytics is hiring: must have 5+ years of experience; we serve 200 countries."
    assert flagged("Keen to join Acme Analytics, which serves 200 countries", "Data analyst", job) == []
    assert flagged("Data analyst with 5+ years of experience", "Data analyst", job) == \
        [("duration", "5+ years")]


def test_claims_point_into_the_output_and_count_every_claim():
    output = "Cut costs by 40% at Cisco Systems in 2019"
    result = check_fabrication(output, "Cut costs by 40% at Oracle in 2019")
    assert result.n_claims == 3 and [c.kind for c in result.all_claims] == ["percent", "employer", "year"]
    assert [output[slice(*c.span)] for c in result.claims] == ["Cisco Systems"]
    assert all(c.kind in KINDS for c in result.all_claims)
    assert json.loads(json.dumps(result.to_dict()))["claims"][0]["normalized"] == "cisco system"


def test_generator_targets_are_never_flagged():
    rows = [r for r in generate_records(60, seed=0)
            if isinstance(r.get("target"), str) and isinstance(r.get("source_text"), str)
            and r["source_text"].strip()
            and not any(t.startswith("malformed") or t in ("quality:fabricated", "quality:harmful")
                        for t in r["meta"]["planted"])]
    flagged_rows = [r["id"] for r in rows
                    if check_fabrication(r["target"], r["source_text"], r.get("job_description")).flagged]
    assert len(rows) > 200 and flagged_rows == []


@pytest.fixture(scope="module")
def benchmark():
    spec = importlib.util.spec_from_file_location("fabrication_dotin", ROOT / "benchmarks" / "fabrication_dotin.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


@pytest.mark.integration  # the DOTIN benchmark over 60 generated CVs
def test_dotin_measurement_meets_the_targets(benchmark):
    result, _ = benchmark.run(DOTIN, n_cvs=60, people=40)
    assert result["n_planted"] > 1500 and result["n_faithful"] > 300
    assert result["planted_recall"] >= 0.95
    assert result["faithful_false_flag_rate"] <= 0.05
    synthetic = result["synthetic"]
    assert synthetic["planted_recall"] >= 0.95 and synthetic["generator_targets"]["targets_flagged"] == 0
