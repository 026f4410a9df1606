"""Exact and near-duplicate removal for curated records.

Duplicates make a model memorise a few rows and, across splits, leak test rows into
training. Two passes:

- exact: a hash of the record's canonical form (task, source, job description, target;
  lowercased, punctuation and whitespace dropped), so rows that differ only in case,
  spacing or punctuation count as the same row;
- near: MinHash-LSH over word shingles finds candidate pairs, and each candidate is then
  verified on the real shingle sets, so LSH false positives never remove a row.

CV text is written from templates ("Cut picking errors by 15% with WMS"), so two
different people's bullets can be a word apart and still state different facts. A near
pair may therefore differ only in ordinary words: a differing token that holds a digit,
or that the row writes with a capital letter other than as a line's first word (a tool,
an employer, a school), makes them different rows whatever their similarity. Word
unigrams are the default shingles: on a 20-word bullet one substituted word removes one
shingle of twenty, while 3-word shingles would lose three and push a true near
duplicate below any useful threshold.

Clusters form around kept rows: rows are read in input order, and a row that is an exact
or verified near duplicate of a row kept earlier joins that row's cluster (the most
similar one, when several qualify); otherwise it is kept. Every removed row is thus within
the threshold of the row kept in its place — union-find over all pairs would also chain
A~B~C and drop C for a kept A it does not resemble.
"""

from __future__ import annotations

import gc
import hashlib
import re
import zlib
from collections import Counter, defaultdict
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Iterator, Literal, Sequence

import numpy as np

_TOKEN = re.compile(r"\w[\w+#]*|[$€£¥%]")  # keeps C++, C#, and currency / percent signs
_FIELDS = ("source_text", "job_description", "target")
_DIGIT = re.compile(r"\d")


@dataclass
class Removal:
    """One dropped record: why, and which kept record stands in for it."""

    id: str
    reason: str
    kept_id: str
    kind: Literal["exact", "near"]
    similarity: float


@dataclass
class DedupResult:
    kept: list
    removed: list[Removal]
    clusters: list[list[str]]  # ids of clusters of 2+ rows, the kept row first


def deduplicate(
    records: Sequence,
    *,
    near: bool = True,
    threshold: float = 0.85,
    num_perm: int = 128,
    ngram: int = 1,
    seed: int = 0,
) -> DedupResult:
    """Drop exact and (optionally) near duplicates, keeping the earliest row of each cluster.

    Args:
        records: objects with id, task, source_text, job_description, target (normalized).
        near: also drop near duplicates; False runs the exact pass only.
        threshold: Jaccard similarity of the shingle sets from which two rows with the same
            task and facts are near duplicates.
        num_perm: MinHash permutations; more gives LSH fewer misses, at some speed cost.
        ngram: word n-gram size of the shingles (1: bag of words, see the module docstring).
        seed: seed of the MinHash permutations.

    Returns:
        DedupResult with the kept records in input order, one Removal per dropped record
        (in input order), and the duplicate clusters. The same input and seed give the
        same result.
    """
    with _gc_paused():
        docs = [_Doc(record) for record in records]
        first_of: dict[bytes, int] = {}
        exact_of = [first_of.setdefault(doc.key, i) for i, doc in enumerate(docs)]
        uniques = [i for i, first in enumerate(exact_of) if first == i]
        near_of = _near_leaders(docs, uniques, threshold, num_perm, ngram, seed) if near else {}
        return _result(records, exact_of, near_of)


def _result(records: Sequence, exact_of: list[int], near_of: dict[int, tuple[int, float]]) -> DedupResult:
    """Clusters, removals and kept rows from each row's exact first and near leader."""
    clusters: dict[int, list[int]] = defaultdict(list)
    removed = []
    for i, first in enumerate(exact_of):
        leader, sim = near_of.get(first, (first, 1.0))
        clusters[leader].append(i)
        if i == leader:
            continue
        keep = records[leader].id
        if leader == first:
            removed.append(Removal(records[i].id, f"exact duplicate of {keep}", keep, "exact", 1.0))
        else:
            removed.append(Removal(records[i].id, f"near duplicate of {keep} (jaccard {sim:.2f})", keep, "near", sim))
    return DedupResult(
        kept=[records[i] for i in clusters],
        removed=removed,
        clusters=[[records[i].id for i in members] for members in clusters.values() if len(members) > 1],
    )


def near_dup_quality(records: Sequence, result: DedupResult) -> dict[str, Any]:
    """Score a dedup run against the synthetic generator's planted duplicates.

    Recall: a planted copy (meta["planted"] has "dup:near" or "dup:exact", meta["dup_of"]
    names its original) is caught unless it and its original are both kept; which of the
    two stays is the dedup's choice.

    Precision: a removal is correct when the removed and kept rows are a planted copy and
    its original (or two copies of one original), exact duplicates, or a rewording: same
    task, no differing number or name, at most four tokens dropped and four added. Template
    rows of different people are often such rewordings ("Was in charge of a KPI dashboard
    ..." / "Helped with a KPI dashboard ...", same target). planted_precision counts
    planted pairs and exact duplicates only, a lower bound.

    Returns:
        {"near_dup_recall", "near_dup_precision", "planted_precision", "exact_dup_recall",
        "planted_near", "planted_exact", "removed"}.
    """
    by_id = {r.id: r for r in records}
    kept = {r.id for r in result.kept}

    def recall(tag: str) -> tuple[float, int]:
        planted = [r for r in records if tag in r.meta.get("planted", ()) and r.meta.get("dup_of") in by_id]
        missed = sum(r.id in kept and r.meta["dup_of"] in kept for r in planted)
        return (1 - missed / len(planted) if planted else 1.0), len(planted)

    def planted_pair(removal: Removal) -> bool:
        family = [by_id[rid].meta.get("dup_of", rid) for rid in (removal.id, removal.kept_id)]
        return removal.kind == "exact" or family[0] == family[1]

    near_recall, n_near = recall("dup:near")
    exact_recall, n_exact = recall("dup:exact")
    planted = [planted_pair(r) for r in result.removed]
    correct = [p or _reworded(_Doc(by_id[r.id]), _Doc(by_id[r.kept_id])) for p, r in zip(planted, result.removed)]
    n_removed = len(result.removed)
    return {
        "near_dup_recall": near_recall,
        "near_dup_precision": sum(correct) / n_removed if n_removed else 1.0,
        "planted_precision": sum(planted) / n_removed if n_removed else 1.0,
        "exact_dup_recall": exact_recall,
        "planted_near": n_near,
        "planted_exact": n_exact,
        "removed": n_removed,
    }


def _reworded(a: _Doc, b: _Doc, most: int = 4) -> bool:
    """Same task and facts, and at most `most` tokens dropped and `most` added."""
    dropped = added = 0
    for tokens_a, tokens_b in zip(a.fields, b.fields):
        count_a, count_b = Counter(tokens_a), Counter(tokens_b)
        dropped += sum((count_a - count_b).values())
        added += sum((count_b - count_a).values())
    return a.task == b.task and dropped <= most and added <= most and _same_facts(a, b)


class _Doc:
    """A record's canonical tokens per field, its exact key and task."""

    def __init__(self, record: Any):
        self.task = record.task
        self.texts = [getattr(record, name) or "" for name in _FIELDS]
        self.fields = [_TOKEN.findall(text.lower()) for text in self.texts]
        canonical = "\x1f".join([record.task] + [" ".join(tokens) for tokens in self.fields])
        self.key = hashlib.blake2b(canonical.encode(), digest_size=16).digest()

    def shingles(self, n: int) -> set[int]:
        """Hashed word n-grams, salted by field so a source word never matches a target word."""
        out = set()
        for salt, tokens in enumerate(self.fields):
            grams = tokens if n == 1 else [" ".join(tokens[i:i + n]) for i in range(max(len(tokens) - n + 1, 1))]
            out.update([zlib.crc32(gram.encode(), salt) for gram in grams])
        return out

    @cached_property
    def vocab(self) -> list[set[str]]:
        return [set(tokens) for tokens in self.fields]

    @cached_property
    def names(self) -> set[str]:
        """Tokens written with a capital letter anywhere but as a line's first word."""
        return {
            token.lower()
            for text in self.texts for line in text.split("\n")
            for token in _TOKEN.findall(line)[1:] if not token.islower()
        }


def _same_facts(a: _Doc, b: _Doc) -> bool:
    """True when the two rows differ only in ordinary words: no number, no name."""
    for words_a, words_b in zip(a.vocab, b.vocab):
        for token in words_a ^ words_b:
            if _DIGIT.search(token) or token in a.names or token in b.names:
                return False
    return True


def _near_leaders(
    docs: list[_Doc], uniques: list[int], threshold: float, num_perm: int, ngram: int, seed: int
) -> dict[int, tuple[int, float]]:
    """Map each exact-unique row that near-duplicates an earlier kept row to (that row, jaccard).

    Signatures are datasketch MinHashes; the banding uses the (bands, rows) that
    datasketch's MinHashLSH picks for the threshold, applied here to the signature
    matrix with one dict per band: MinHashLSH's per-row insert and query took 4 of the
    10 s a 93k-row run needed, plain dicts keyed by one number per band take 1 s.
    Only kept rows are indexed, so every candidate is a possible leader. The LSH
    threshold sits below the verified one: LSH misses pairs close to its own threshold,
    while each extra candidate costs one set comparison.
    """
    from datasketch import MinHashLSH

    shingles = {i: docs[i].shingles(ngram) for i in uniques}
    rows = [i for i in uniques if shingles[i]]
    if not rows:
        return {}
    lsh = MinHashLSH(threshold=max(threshold - 0.15, 0.3), num_perm=num_perm)
    keys = _band_keys(_signatures([shingles[i] for i in rows], num_perm, seed), lsh.b, lsh.r, seed)
    tables: list[dict[int, list[int]]] = [{} for _ in range(lsh.b)]
    leaders = {}
    for i, row_keys in zip(rows, keys):
        candidates = set()
        for table, key in zip(tables, row_keys):
            candidates.update(table.get(key, ()))
        if leader := _best_leader(i, candidates, docs, shingles, threshold):
            leaders[i] = leader
        else:
            for table, key in zip(tables, row_keys):
                table.setdefault(key, []).append(i)
    return leaders


def _signatures(shingles: list[set[int]], num_perm: int, seed: int) -> np.ndarray:
    """MinHash signatures, one row per set, through one reused MinHash (MinHash.bulk
    copies a sketch per set, a fifth of its time)."""
    from datasketch import MinHash

    sketch = MinHash(num_perm=num_perm, seed=seed, hashfunc=_as_is)
    out = np.empty((len(shingles), num_perm), dtype=sketch.hashvalues.dtype)
    for row, items in enumerate(shingles):
        sketch.clear()
        sketch.update_batch(items)
        out[row] = sketch.hashvalues
    return out


def _band_keys(signatures: np.ndarray, bands: int, rows: int, seed: int) -> list[list[int]]:
    """One 64-bit key per row and band: an odd-weighted sum of the band's values. Two
    different bands share a key with odds near 2^-64, and a shared key only adds a
    candidate that verification rejects."""
    weights = np.random.default_rng(seed).integers(0, 2**63, size=rows, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    keys = [(signatures[:, b * rows:(b + 1) * rows].astype(np.uint64) * weights).sum(axis=1) for b in range(bands)]
    return np.stack(keys, axis=1).tolist()


def _best_leader(
    i: int, candidates: set[int], docs: list[_Doc], shingles: dict[int, set[int]], threshold: float
) -> tuple[int, float] | None:
    """The most similar verified candidate, the earliest on a tie."""
    leader, best = None, 0.0
    for j in sorted(candidates):
        sim = _jaccard(shingles[i], shingles[j])
        if sim >= threshold and sim > best and docs[j].task == docs[i].task and _same_facts(docs[i], docs[j]):
            leader, best = j, sim
    return None if leader is None else (leader, round(best, 3))


def _as_is(value: int) -> int:
    """The shingles are hashed already (crc32: stable across processes, unlike hash())."""
    return value


def _jaccard(a: set, b: set) -> float:
    shared = len(a & b)
    return shared / (len(a) + len(b) - shared)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector. Dedup allocates several small containers per
    row and makes no reference cycles, yet with 100k records alive every automatic
    collection rescans them all: a third of the run time at that size."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
