"""The synthetic CV generator: deterministic, schema-true, faithful targets, and planted
problems whose tags match what was actually planted (curation is scored against them)."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from cvml.data.records import validate_row
from cvml.tiny import vocab
from cvml.tiny.synth import PII_KINDS, generate_records, pretraining_corpus, write_synthetic_dataset

NUMBER = re.compile(r"\d+(?:\.\d+)?")


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return generate_records(400, seed=0)


def tags(row: dict) -> list[str]:
    return row["meta"]["planted"]


def is_malformed(row: dict) -> bool:
    return any(t.startswith("malformed:") for t in tags(row))


def clean(rows: list[dict], task: str | None = None) -> list[dict]:
    return [r for r in rows if not tags(r) and (task is None or r["task"] == task)]


def words(text: str) -> int:
    return len(text.split())


def has_word(phrase: str, text: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(phrase)}(?!\w)", text) is not None


def test_same_seed_same_rows_and_different_seed_different_rows():
    assert generate_records(40, seed=3) == generate_records(40, seed=3)
    assert generate_records(40, seed=3) != generate_records(40, seed=4)
    assert pretraining_corpus(50, seed=1) == pretraining_corpus(50, seed=1)
    assert pretraining_corpus(50, seed=1) != pretraining_corpus(50, seed=2)


def test_ids_unique_and_sequential_except_the_planted_missing_ones(rows):
    ids = [r.get("id") for r in rows]
    missing = [r for r in rows if "id" not in r]
    assert missing and all(tags(r) == ["malformed:missing_id"] for r in missing)
    assert [i for i in ids if i is not None] == [f"r{n:06d}" for n, i in enumerate(ids) if i is not None]


def test_every_person_has_several_rows_of_one_role(rows):
    by_group: dict[str, list[dict]] = {}
    for r in rows:
        by_group.setdefault(r["group"], []).append(r)
    assert sorted(by_group) == [f"p{i:05d}" for i in range(400)]
    for group_rows in by_group.values():
        assert len(group_rows) >= 3
        assert len({r["meta"]["role"] for r in group_rows}) == 1


def test_task_mix_is_roughly_60_25_15(rows):
    base = [r for r in rows if not is_malformed(r) and not any(t.startswith("dup:") for t in tags(r))]
    counts = Counter(r["task"] for r in base)
    for task, share in {"rewrite_bullet": 0.60, "tailor_section": 0.25, "summary": 0.15}.items():
        assert counts[task] / len(base) == pytest.approx(share, abs=0.04)


def test_planted_rates(rows):
    n = len(rows)
    count = Counter(t for r in rows for t in tags(r))
    with_pii = sum(any(t.startswith("pii:") for t in tags(r)) for r in rows)
    assert with_pii / n == pytest.approx(0.10, abs=0.01)
    assert sum(is_malformed(r) for r in rows) / n == pytest.approx(0.03, abs=0.01)
    for tag in ("dup:exact", "dup:near"):
        assert count[tag] / n == pytest.approx(0.03, abs=0.01)
    for tag in ("quality:identical", "quality:trivial", "quality:fabricated", "quality:harmful"):
        assert 5 <= count[tag] <= 0.02 * n
    assert {f"pii:{kind}" for kind in PII_KINDS} <= set(count)
    assert len(clean(rows)) / n > 0.75  # 23% of rows carry one planted problem


def test_summary_counts_match_the_file(tmp_path):
    summary = write_synthetic_dataset(tmp_path / "out", n_people=120, seed=5)
    lines = (tmp_path / "out" / "cv-raw.jsonl").read_text(encoding="utf-8").splitlines()
    written = [json.loads(line) for line in lines]
    assert written == generate_records(120, seed=5)
    assert summary["path"] == str(tmp_path / "out" / "cv-raw.jsonl")
    assert summary["rows"] == len(written) == sum(summary["by_task"].values())
    assert summary["people"] == 120
    assert summary["by_task"] == dict(Counter(str(r.get("task")) for r in written))
    assert summary["planted"] == dict(Counter(t for r in written for t in tags(r)))


def test_malformed_rows_fail_the_schema_and_all_others_pass(rows):
    kinds = set()
    for r in rows:
        record, reason = validate_row(r)
        if is_malformed(r):
            assert record is None and reason, r
            kinds.add(tags(r)[0])
        else:
            assert reason is None, (reason, r)
    assert kinds == {f"malformed:{k}" for k in
                     ("missing_target", "empty_source", "unknown_task", "target_not_string", "tailor_without_jd",
                      "missing_id")}


def test_duplicates_point_at_their_original(rows):
    by_id = {r["id"]: r for r in rows if "id" in r}
    fields = ("task", "source_text", "job_description", "target", "group")
    dups = [r for r in rows if tags(r) and tags(r)[0].startswith("dup:")]
    assert dups
    for dup in dups:
        original = by_id[dup["meta"]["dup_of"]]
        assert not tags(original) and original["id"] != dup["id"]
        if tags(dup) == ["dup:exact"]:
            assert all(dup[f] == original[f] for f in fields)
        else:
            assert dup["source_text"] != original["source_text"]
            assert dup["target"] == original["target"]
            new, old = re.findall(r"\w+", dup["source_text"]), re.findall(r"\w+", original["source_text"])
            assert len(new) == len(old) and sum(a != b for a, b in zip(new, old)) <= 1  # one word at most


def test_quality_plants(rows):
    for r in rows:
        if "quality:identical" in tags(r):
            assert r["target"] == r["source_text"]
        if "quality:trivial" in tags(r):
            assert words(r["target"]) <= 2


@pytest.mark.integration  # serve's checks over 400 generated people
def test_fabricated_and_harmful_plants_are_what_the_checks_find(rows):
    """Curation removes these with the same checks serve runs: each planted one is found,
    and no clean target is flagged."""
    from cvml.safety.fabrication import check_fabrication
    from cvml.safety.harmful import check_harmful

    planted = {"quality:fabricated": 0, "quality:harmful": 0}
    for r in rows:
        if validate_row(r)[1] is not None or {"pii:name", "pii:email", "pii:phone", "pii:url", "pii:address",
                                              "pii:dob"} & set(tags(r)):
            continue
        fabricated = check_fabrication(r["target"], r["source_text"], r["job_description"]).flagged
        harmful = check_harmful(r["target"], r["source_text"], r["job_description"]).to_dict()
        harmful = harmful["protected_attributes"]["flagged"] or harmful["abusive"]["flagged"]
        if "quality:fabricated" in tags(r):
            assert fabricated, r["target"]
            planted["quality:fabricated"] += 1
        elif "quality:harmful" in tags(r):
            assert harmful, r["target"]
            planted["quality:harmful"] += 1
        else:
            assert not fabricated and not harmful, r["target"]
    assert all(n >= 5 for n in planted.values()), planted


def test_tailored_sections_use_the_jd_keywords_the_person_has_and_only_those(rows):
    tailored = clean(rows, "tailor_section")
    assert tailored
    for r in tailored:
        have, lack = r["meta"]["jd_keywords"], r["meta"]["missing_keywords"]
        assert have and lack
        for keyword in have + lack:
            assert has_word(keyword, r["job_description"])
        for keyword in have:
            assert has_word(keyword, r["target"]), (keyword, r["target"])
        for keyword in lack:
            assert not has_word(keyword, r["target"]) and not has_word(keyword, r["source_text"]), keyword
        header, key_skills, *bullets = r["target"].splitlines()
        assert header == r["source_text"].splitlines()[0]
        assert sorted(key_skills.removeprefix("Key skills: ").split(", ")) == sorted(have)
        leads = [any(has_word(k, bullet) for k in have) for bullet in bullets]
        assert leads == sorted(leads, reverse=True), bullets  # bullets showing the ad's keywords come first


def test_targets_invent_no_numbers_employers_or_schools(rows):
    names = vocab.COMPANIES + vocab.SCHOOLS
    for r in rows:
        if validate_row(r)[1] is not None or {"quality:fabricated", "quality:harmful"} & set(tags(r)):
            continue
        given = r["source_text"] + " " + (r["job_description"] or "")
        assert set(NUMBER.findall(r["target"])) <= set(NUMBER.findall(given)), r
        for name in names:  # near duplicates may double a space inside a name
            assert name not in r["target"] or name in " ".join(r["source_text"].split()), (name, r)


def test_clean_rows_carry_no_pii(rows):
    people = {f"{first} {last}" for first in vocab.FIRST_NAMES for last in vocab.LAST_NAMES}
    for r in clean(rows):
        text = r["source_text"] + r["target"]
        assert "@" not in text and "linkedin.com" not in text and "github.com" not in text
        assert not re.search(r"\+\d", text) and "DOB" not in text and "Date of birth" not in text
        assert not any(name in text for name in people)


def test_texts_fit_the_tiny_context(rows):
    for r in clean(rows, "rewrite_bullet"):
        assert 8 <= words(r["source_text"]) <= 30, r["source_text"]
    for r in clean(rows, "tailor_section"):
        assert words(r["source_text"]) < 90 and words(r["target"]) < 90
        assert words(r["job_description"]) < 70
        assert 2 <= r["source_text"].count("\n- ") <= 4
    for r in clean(rows, "summary"):
        assert r["target"].count(". ") == 1 and r["target"].endswith(".")


def test_every_task_tool_is_a_skill_of_its_role():
    for role in vocab.ROLES:
        terms = {s.partition("|")[0] for s in role["skills"]}
        assert len(role["tasks"]) == 6
        for _verbs, _obj, _metric, tools in role["tasks"]:
            assert set(tools) <= terms, (role["title"], tools)
    assert len(vocab.ROLES) >= 25


def test_pretraining_corpus_is_varied_domain_text_without_pii():
    docs = pretraining_corpus(600, seed=1)
    assert len(docs) == 600 and len(set(docs)) == 600
    assert all(30 <= words(d) <= 150 for d in docs)
    people = {f"{first} {last}" for first in vocab.FIRST_NAMES for last in vocab.LAST_NAMES}
    for d in docs:
        assert "@" not in d and not re.search(r"\+\d", d) and "linkedin.com" not in d
        assert not any(name in d for name in people)
    for marker in ("Experience\n", "What you bring:", "SKILLS", "Dear Hiring Manager", "Weak: ", "What does"):
        assert sum(marker.lower() in d.lower() for d in docs) > 40, marker
    assert sum(words(d) for d in docs) / len(docs) > 50

