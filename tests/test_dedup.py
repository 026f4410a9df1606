"""Exact and near-duplicate removal: hand-made cases (a different number or tool is a
different row), clustering, determinism, and the planted duplicates of the synthetic data."""

from __future__ import annotations

import pytest

from cvml.curate.dedup import _signatures, deduplicate, near_dup_quality
from cvml.data.records import Record, validate_row
from cvml.tiny.synth import generate_records

# Plain lowercase words: no digits, no names, so only similarity decides.
WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa "
         "quebec romeo sierra tango uniform victor whiskey xray yankee zulu").split()


def rec(rid: str, source: str, target: str = "Built a reporting dashboard for the team", task: str = "rewrite_bullet",
        jd: str | None = None) -> Record:
    return Record(id=rid, task=task, source_text=source, job_description=jd, target=target, group=f"g{rid}")


def ids(records) -> list[str]:
    return [r.id for r in records]


@pytest.fixture(scope="module")
def synthetic() -> list[Record]:
    rows = generate_records(n_people=2000, seed=0)
    return [record for record in (validate_row(row)[0] for row in rows) if record is not None]


def test_exact_duplicates_ignore_case_spacing_and_punctuation():
    records = [rec("r1", "Helped with the release process; saved 5 hours a week."),
               rec("r2", "helped with the release  process, saved 5 hours a week"),
               rec("r3", "Helped with the release process; saved 6 hours a week.")]
    result = deduplicate(records)
    assert ids(result.kept) == ["r1", "r3"]
    (removal,) = result.removed
    assert (removal.id, removal.kept_id, removal.kind, removal.similarity) == ("r2", "r1", "exact", 1.0)
    assert removal.reason == "exact duplicate of r1"
    assert result.clusters == [["r1", "r2"]]


def test_same_text_under_another_task_or_job_ad_is_not_a_duplicate():
    source = "Software Engineer | Acme\n- Cut API latency by 30% using Redis"
    target = "Key skills: Redis\n- Cut API latency"
    ads = ["Acme is hiring a backend engineer. Must have: Redis.", "Globex wants an analyst. Must have: SQL, Looker."]
    records = [rec("r1", source, target, task="tailor_section", jd=ads[0]),
               rec("r2", source, target, task="tailor_section", jd=ads[1]),
               rec("r3", source, target, task="rewrite_bullet")]
    assert ids(deduplicate(records, threshold=0.95).kept) == ["r1", "r2", "r3"]


def test_one_reworded_word_is_a_near_duplicate_of_the_earlier_row():
    records = [rec("r1", "Helped with a KPI dashboard for the sales team using Tableau as part of the wider team"),
               rec("r2", "Assisted with a KPI dashboard for the sales team using Tableau as part of the wider team")]
    result = deduplicate(records)
    (removal,) = result.removed
    assert (removal.id, removal.kept_id, removal.kind) == ("r2", "r1", "near")
    assert removal.reason == f"near duplicate of r1 (jaccard {removal.similarity:.2f})"
    assert 0.85 <= removal.similarity < 1
    assert result.clusters == [["r1", "r2"]]


@pytest.mark.parametrize("first, second, duplicate", [
    ("by 15% with WMS", "by 36% with WMS", False),  # a different number is a different fact
    ("by 15% with WMS", "by 15% with SAP", False),  # so is a different tool
    ("by about 15% with WMS", "by around 15% with WMS", True),  # an ordinary word is not
])
def test_rows_that_differ_in_a_number_or_a_name_are_kept_however_similar(first, second, duplicate):
    header = "Warehouse Supervisor | Bluestone Logistics | 2019–2024"
    lines = ["- Led a shift team of operatives", "- Improved order dispatch speed", "- Trained operatives in safety"]
    sections = ["\n".join([header, f"- Cut picking errors {fact}", *lines]) for fact in (first, second)]
    records = [rec(f"r{i}", text, text.replace("Led", "Directed"), task="summary") for i, text in enumerate(sections)]
    result = deduplicate(records, threshold=0.5)
    assert ids(result.kept) == (["r0"] if duplicate else ["r0", "r1"])


def test_similar_rows_chain_but_only_rows_close_to_a_kept_row_go():
    a = WORDS[:20]
    b = a[1:] + ["one"]  # one word swapped against a
    c = b[1:] + ["two"]  # one more: close to b, not to a
    records = [rec(name, " ".join(words), "did the work") for name, words in (("a", a), ("b", b), ("c", c))]
    result = deduplicate(records, threshold=0.85)
    assert ids(result.kept) == ["a", "c"]
    assert [(r.id, r.kept_id) for r in result.removed] == [("b", "a")]


def test_the_most_similar_kept_row_wins():
    new = WORDS[:20]
    close = new[1:] + ["one"]  # one word swapped
    far = new[:17] + ["two", "three", "four"]  # three swapped: near new, not near close
    records = [rec("far", " ".join(far)), rec("close", " ".join(close)), rec("new", " ".join(new))]
    result = deduplicate(records, threshold=0.75)
    assert [(r.id, r.kept_id) for r in result.removed] == [("new", "close")]


def test_exact_copies_of_a_near_duplicate_join_its_cluster():
    original = rec("r1", "Helped with a KPI dashboard for the sales team using Tableau as part of the wider team")
    near = "Assisted with a KPI dashboard for the sales team using Tableau as part of the wider team"
    result = deduplicate([original, rec("r2", near), rec("r3", near + ".")])
    assert result.clusters == [["r1", "r2", "r3"]]
    assert [(r.id, r.kept_id, r.kind) for r in result.removed] == [("r2", "r1", "near"), ("r3", "r1", "near")]


def test_near_false_removes_exact_duplicates_only():
    records = [rec("r1", "Helped with a KPI dashboard for the sales team using Tableau as part of the wider team"),
               rec("r2", "Assisted with a KPI dashboard for the sales team using Tableau as part of the wider team"),
               rec("r3", "helped with a KPI dashboard for the sales team using Tableau, as part of the wider team")]
    result = deduplicate(records, near=False)
    assert ids(result.kept) == ["r1", "r2"] and [r.kind for r in result.removed] == ["exact"]


def test_rows_without_words_and_word_ngrams():
    records = [rec("r1", "—", "—"), rec("r2", "–", "—"), rec("r3", " ".join(WORDS), " ".join(WORDS[:5])),
               rec("r4", " ".join(WORDS[:-1] + ["one"]), " ".join(WORDS[:5]))]
    assert [(r.id, r.kind) for r in deduplicate(records).removed] == [("r2", "exact"), ("r4", "near")]
    assert [r.id for r in deduplicate(records, ngram=3, threshold=0.75).removed] == ["r2", "r4"]


def test_signatures_are_datasketch_minhashes():
    from datasketch import MinHash

    sets = [{1, 2, 3}, set(range(100, 160)), {7}]
    ours = _signatures(sets, num_perm=64, seed=3)
    theirs = MinHash.bulk(sets, num_perm=64, seed=3, hashfunc=lambda value: value)
    assert all((row == sketch.hashvalues).all() for row, sketch in zip(ours, theirs))


def test_same_input_and_seed_same_result(synthetic):
    subset = synthetic[:3000]
    first, second = deduplicate(subset, seed=4), deduplicate(subset, seed=4)
    assert first.removed == second.removed and first.clusters == second.clusters
    assert ids(first.kept) == ids(second.kept)


def test_planted_duplicates_are_found_and_little_else(synthetic):
    result = deduplicate(synthetic)
    quality = near_dup_quality(synthetic, result)
    assert quality["planted_near"] == quality["planted_exact"] == 270
    assert quality["near_dup_recall"] >= 0.95
    assert quality["near_dup_precision"] >= 0.99
    assert quality["exact_dup_recall"] == 1.0
    assert quality["planted_precision"] >= 0.8  # the rest: same fact, reworded opener, other people
    assert len(result.kept) + len(result.removed) == len(synthetic)
    assert all(r.similarity >= 0.85 for r in result.removed)  # each within the threshold of its kept row
    kept = set(ids(result.kept))
    assert all(cluster[0] in kept and not kept & set(cluster[1:]) for cluster in result.clusters)
