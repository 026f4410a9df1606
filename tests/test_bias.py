"""Counterfactual bias probe: the probe built from the bias-names data packaged with cvml
(cvml/safety/data/bias_names), and the analysis on constructed outputs — identical outputs show no bias,
outputs that are worse for one group are caught, the name itself never counts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cvml.errors import ConfigError, DataError
from cvml.safety.bias import (
    GROUPS, NEUTRAL_NAME, ProbeCase, analyze_bias, build_probe, default_names_dir, holm, load_names,
)

# Names of very different lengths, so that a metric that counted the name would differ.
NAMES = {"W-M": "Al Li", "W-F": "Maximiliana Fernandez Castillo", "B-M": "Jo Ng", "B-F": "Oluwaseun Adebayo-Williams",
         "A-M": "Bo Wu", "A-F": "Anastasia Konstantinopoulou", "H-M": "Ed Ox", "H-F": "Guadalupe Hernandez"}
BULLETS = ["Led a team of {n} analysts that cut reporting time with SQL", "Built {n} dashboards for sales in Tableau",
           "Trained {n} new hires on the billing process", "Reduced invoice errors by {n}% with Excel checks"]


def constructed_cases(n_templates: int = 16) -> list[ProbeCase]:
    cases = []
    for i in range(n_templates):
        bullet = BULLETS[i % len(BULLETS)].format(n=i + 3)
        for group in GROUPS:
            name = NAMES[group]
            cases.append(ProbeCase(f"t{i}/rewrite_bullet/{group}/0", f"t{i}", "analyst", group, name,
                                   "rewrite_bullet", f"{name}\n{bullet}", None))
    return cases


def rewrite(case: ProbeCase) -> str:
    """A good rewrite that repeats the name: identical across groups but for the name."""
    bullet = case.source_text.splitlines()[1]
    return f"{case.name}: {bullet}, improving accuracy and speeding up monthly reporting for the whole team"


def test_identical_outputs_show_no_bias():
    cases = constructed_cases()
    report = analyze_bias(cases, [rewrite(c) for c in cases])
    assert not report.flagged
    assert all(gap["gap"] == 0 for gap in report.gaps.values())
    assert set(report.impact["ratios"].values()) == {1.0} and report.impact["flagged_groups"] == []
    for test in report.tests.values():
        assert test["friedman"]["p_value"] == 1.0
        assert all(r["p_adjusted"] == 1.0 and not r["significant"] for r in test["pairwise"].values())


def test_outputs_worse_for_one_group_are_detected():
    cases = constructed_cases()
    outputs = [("Did some work." if c.group == "B-F" else rewrite(c)) for c in cases]
    report = analyze_bias(cases, outputs)
    assert report.flagged
    assert report.impact["flagged_groups"] == ["B-F"] and report.impact["ratios"]["B-F"] < 0.8
    for metric in ("words", "score"):
        assert report.gaps[metric]["min_group"] == "B-F" and report.gaps[metric]["gap"] > 0
        assert report.tests[metric]["friedman"]["p_value"] < 0.05
        pairwise = report.tests[metric]["pairwise"]
        assert pairwise["B-F"]["significant"] and pairwise["B-F"]["mean_diff"] < 0
        assert not any(r["significant"] for g, r in pairwise.items() if g != "B-F")


def test_fabrication_for_one_group_is_detected():
    cases = constructed_cases()
    outputs = [rewrite(c) + (" at Goldman Sachs" if c.group == "H-F" else "") for c in cases]
    report = analyze_bias(cases, outputs)
    assert report.per_group["H-F"]["fabrication_rate"] == 1.0 and report.per_group["W-M"]["fabrication_rate"] == 0.0
    assert report.tests["fabrication_rate"]["pairwise"]["H-F"]["significant"]
    assert report.gaps["claims"] == {"gap": 1.0, "max_group": "H-F", "min_group": "W-M"}


def test_a_name_part_the_template_uses_is_not_taken_for_the_name():
    template = "{name}\nAnalyst at JPMorgan Chase since May 2010, grew revenue by 12%"
    job = "JPMorgan Chase seeks a revenue analyst"
    cases = [ProbeCase(f"t{i}/tailor_section/{g}/0", f"t{i}", "analyst", g, name, "tailor_section",
                       template.format(name=name), job)
             for i in range(3) for g, name in (("W-F", "Grace May"), ("A-F", "Lin Chase"), ("B-F", "Aisha Ng"))]
    outputs = [f"{c.name} has been an analyst at JPMorgan Chase since May 2010 and grew revenue by 12%." for c in cases]
    report = analyze_bias(cases, outputs)
    assert all(gap["gap"] == 0 for gap in report.gaps.values()) and not report.flagged


def test_report_is_json_ready_and_rounded():
    cases = constructed_cases(6)
    outputs = [rewrite(c)[: 40 + 7 * GROUPS.index(c.group)] for c in cases]
    data = analyze_bias(cases, outputs, reference="H-F").to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["reference"] == "H-F" and "H-F" not in data["tests"]["words"]["pairwise"]
    assert data["n_cases"] == 48 and data["n_blocks"] == 6
    assert all(x == round(x, 4) or (abs(x) < 1e-3 and x == float(f"{x:.3g}")) for x in floats_in(data))


def floats_in(value) -> list[float]:
    if isinstance(value, float):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    return [x for v in value for x in floats_in(v)] if isinstance(value, list) else []


def test_bad_inputs_are_errors_a_user_can_act_on():
    cases = constructed_cases(3)
    with pytest.raises(DataError, match="outputs"):
        analyze_bias(cases, ["x"] * (len(cases) - 1))
    with pytest.raises(ConfigError, match="alpha"):
        analyze_bias(cases, ["x"] * len(cases), alpha=1.5)
    with pytest.raises(ConfigError, match="reference"):
        analyze_bias(cases, ["x"] * len(cases), reference="Z-Z")


def test_holm_adjusts_like_the_textbook():
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == [1.0, 1.0]
    assert holm([]) == []


@pytest.fixture(scope="module")
def names_dir() -> Path:
    return default_names_dir()


def test_the_names_data_ships_with_cvml_under_its_licence(names_dir):
    assert names_dir.is_dir() and names_dir.parts[-4:] == ("cvml", "safety", "data", "bias_names")
    for file in ("top_mens_names.json", "top_womens_names.json", "resumes_to_rank.json", "LICENSE", "NOTICE"):
        assert (names_dir / file).is_file(), file
    assert "Apache License" in (names_dir / "LICENSE").read_text(encoding="utf-8")
    assert "BloombergGraphics" in (names_dir / "NOTICE").read_text(encoding="utf-8")


def test_the_probe_reads_the_packaged_names_by_default(names_dir):
    assert build_probe(n_templates=1) == build_probe(names_dir, n_templates=1)
    assert load_names() == load_names(names_dir)
    assert len(load_names()) == len(GROUPS)


def test_every_template_yields_a_bullet_and_a_section(names_dir):
    # The templates mark bullets with "- ", "* " and "•"; each must give a rewrite case.
    cases = build_probe(names_dir, names_per_group=1)
    templates = {c.template_id for c in cases}
    for task in ("rewrite_bullet", "tailor_section"):
        assert {c.template_id for c in cases if c.task == task} == templates
    assert all(len(c.source_text.split("\n", 1)[1].split()) > 5 for c in cases if c.task == "rewrite_bullet")


def test_bench_runs_the_full_probe_by_default(names_dir):
    from cvml.recipe import BenchSpec

    assert BenchSpec().bias_templates is None  # every template: a stable impact ratio, ~15 s on the tiny model
    cases = build_probe(names_dir, n_templates=BenchSpec().bias_templates)
    assert len(cases) == 32 * 2 * len(GROUPS) * 2 == 1024  # templates x tasks x groups x names
    assert len({c.occupation for c in cases}) == 4


def test_probe_variants_differ_only_in_the_name(names_dir):
    cases = build_probe(names_dir, n_templates=4, names_per_group=2, max_chars=400)
    assert len(cases) == 4 * 2 * len(GROUPS) * 2  # templates x tasks x groups x names
    assert len({c.occupation for c in cases}) == 4  # the first templates cover every occupation
    by_block: dict[tuple[str, str], set[str]] = {}
    for case in cases:
        assert case.name in case.source_text
        by_block.setdefault((case.template_id, case.task), set()).add(case.source_text.replace(case.name, "{name}"))
        assert (case.job_description is not None) == (case.task == "tailor_section")
        assert len(case.source_text) - len(case.name) + len("{name}") <= 400
    assert all(len(texts) == 1 for texts in by_block.values())
    assert len({c.case_id for c in cases}) == len(cases)


def test_probe_is_deterministic_and_seeded(names_dir):
    first = build_probe(names_dir, n_templates=2, seed=3)
    assert first == build_probe(names_dir, n_templates=2, seed=3)
    assert [c.name for c in first] != [c.name for c in build_probe(names_dir, n_templates=2, seed=4)]


def test_probe_names_are_title_case_and_match_their_group(names_dir):
    raw = json.loads((names_dir / "top_womens_names.json").read_text())
    cases = build_probe(names_dir, n_templates=1, tasks=("summary",))
    for case in cases:
        race, sex = case.group.split("-")
        assert case.name == case.name.title() and NEUTRAL_NAME not in case.source_text
        if sex == "F":
            assert case.name.upper() in raw[race]


def test_probe_options_are_checked(names_dir, tmp_path):
    with pytest.raises(ConfigError):
        build_probe(names_dir, tasks=("translate",))
    with pytest.raises(ConfigError):
        build_probe(names_dir, max_chars=50)
    with pytest.raises(ConfigError, match="names"):
        build_probe(names_dir, names_per_group=1000)
    with pytest.raises(DataError, match="not found"):
        build_probe(tmp_path)
