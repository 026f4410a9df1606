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

No row has to stay in memory for this. `Fingerprinter` reduces rows to what dedup needs
(exact key, shingles, LSH band keys) where the rows are: a worker process or a Ray actor.
`find_leaders` decides on the driver from those fingerprints alone and asks for a row's
text (`record_of`) only for a pair within the threshold, to compare their facts.
`deduplicate` runs both over a list in memory.
"""

from __future__ import annotations

import gc
import hashlib
import itertools
import re
import zlib
from collections import Counter, defaultdict
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Any, Callable, Iterator, Literal, Sequence

import numpy as np

_TOKEN = re.compile(r"\w[\w+#]*|[$€£¥%]")  # keeps C++, C#, and currency / percent signs
_FIELDS = ("source_text", "job_description", "target")
_DIGIT = re.compile(r"\d")
# Documents of rows whose facts were compared, kept at hand on the driver: the rows of a
# template-heavy bucket come back again and again.
_DOCS_CACHED = 8_192


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


@dataclass
class Fingerprints:
    """Dedup's view of rows, column by column: what the driver holds instead of the rows.

    Rows without shingles (no word at all) take part in the exact pass only."""

    keys: np.ndarray  # (n,) V16: blake2b of the canonical form
    tasks: np.ndarray  # (n,) uint32: crc32 of the task, a pre-filter (the documents decide)
    sizes: np.ndarray  # (n,) int32: shingles per row
    shingles: np.ndarray  # (sizes.sum(),) uint32: each row's shingles, sorted, row after row
    bands: np.ndarray | None  # (n, bands) uint64 LSH band keys; None when near dedup is off

    def __len__(self) -> int:
        return len(self.keys)

    @classmethod
    def concat(cls, parts: list[Fingerprints], bands: int | None) -> Fingerprints:
        """One set of fingerprints from consecutive parts (an empty one from none). Consumes
        `parts`, a column at a time, so memory holds the rows' fingerprints about once."""
        def join(name: str, empty: np.ndarray) -> np.ndarray:
            arrays = [getattr(p, name) for p in parts]
            for part in parts:
                setattr(part, name, None)
            joined = np.concatenate(arrays) if arrays else empty
            arrays.clear()
            return joined

        return cls(
            keys=join("keys", np.empty(0, "V16")),
            tasks=join("tasks", np.empty(0, np.uint32)),
            sizes=join("sizes", np.empty(0, np.int32)),
            shingles=join("shingles", np.empty(0, np.uint32)),
            bands=None if bands is None else join("bands", np.empty((0, bands), np.uint64)),
        )

    def select(self, keep: np.ndarray) -> Fingerprints:
        """The rows where `keep` (bool) is true."""
        return Fingerprints(
            keys=self.keys[keep], tasks=self.tasks[keep], sizes=self.sizes[keep],
            shingles=self.shingles[np.repeat(keep, self.sizes)],
            bands=None if self.bands is None else self.bands[keep],
        )


class Fingerprinter:
    """Rows → `Fingerprints`, computed where the rows are. Picklable: workers and Ray actors
    each get a copy, and the same settings give the same fingerprints everywhere.

    Args:
        near: also shingle and band the rows for near dedup.
        threshold: Jaccard from which rows are near duplicates; the LSH threshold sits 0.15
            below it: LSH misses pairs close to its own threshold, while each extra
            candidate costs one set comparison.
        num_perm: MinHash permutations; more gives LSH fewer misses, at some speed cost.
        ngram: word n-gram size of the shingles (1: bag of words, see the module docstring).
        seed: seed of the MinHash permutations and the band keys.
    """

    def __init__(self, *, near: bool = True, threshold: float = 0.85, num_perm: int = 128, ngram: int = 1, seed: int = 0):
        self.near, self.num_perm, self.ngram, self.seed = near, num_perm, ngram, seed
        self.bands = self.rows = None
        if near:
            from datasketch import MinHashLSH

            # The (bands, rows) that datasketch's MinHashLSH picks for the threshold, applied
            # here to the signature matrix: its per-row insert and query took 4 of the 10 s a
            # 93k-row run needed.
            lsh = MinHashLSH(threshold=max(threshold - 0.15, 0.3), num_perm=num_perm)
            self.bands, self.rows = lsh.b, lsh.r

    def __call__(self, records: Sequence) -> Fingerprints:
        docs = [_Doc(record) for record in records]
        n = len(docs)
        keys = np.frombuffer(b"".join(doc.key for doc in docs), dtype="V16") if docs else np.empty(0, "V16")
        tasks = np.fromiter((zlib.crc32(doc.task.encode()) for doc in docs), np.uint32, n)
        if not self.near:
            return Fingerprints(keys, tasks, np.zeros(n, np.int32), np.empty(0, np.uint32), None)
        sets = [doc.shingles(self.ngram) for doc in docs]
        sizes = np.fromiter(map(len, sets), np.int32, n)
        shingles = np.fromiter(itertools.chain.from_iterable(sorted(s) for s in sets), np.uint32, int(sizes.sum()))
        bands = np.zeros((n, self.bands), np.uint64)
        if sizes.any():
            signatures = _signatures([s for s in sets if s], self.num_perm, self.seed)
            bands[sizes > 0] = _band_keys(signatures, self.bands, self.rows, self.seed)
        return Fingerprints(keys, tasks, sizes, shingles, bands)


@dataclass
class Leaders:
    """Each row's cluster leader (itself when the row is kept), and for the others whether
    they joined it as a near duplicate and how similar they are."""

    leader: np.ndarray  # (n,) int64
    near: np.ndarray  # (n,) bool
    similarity: np.ndarray  # (n,) float64: 1.0 for exact duplicates

    @property
    def kept(self) -> np.ndarray:
        return self.leader == np.arange(len(self.leader))

    def cluster_leaders(self) -> tuple[np.ndarray, np.ndarray]:
        """Leaders of clusters of 2+ rows, in input order; their sizes."""
        sizes = np.bincount(self.leader, minlength=len(self.leader))
        leaders = np.flatnonzero(sizes > 1)
        return leaders, sizes[leaders]

    def reason(self, i: int, kept_id: str) -> str:
        if self.near[i]:
            return f"near duplicate of {kept_id} (jaccard {self.similarity[i]:.2f})"
        return f"exact duplicate of {kept_id}"


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
        num_perm, ngram, seed: see `Fingerprinter`.

    Returns:
        DedupResult with the kept records in input order, one Removal per dropped record
        (in input order), and the duplicate clusters. The same input and seed give the
        same result.
    """
    with _gc_paused():
        fingerprints = Fingerprinter(near=near, threshold=threshold, num_perm=num_perm, ngram=ngram, seed=seed)(records)
        leaders = find_leaders(fingerprints, records.__getitem__, threshold=threshold)
        clusters: dict[int, list[int]] = defaultdict(list)
        for i, lead in enumerate(leaders.leader.tolist()):
            clusters[lead].append(i)
        removed = []
        for i in np.flatnonzero(~leaders.kept).tolist():
            keep = records[int(leaders.leader[i])].id
            kind = "near" if leaders.near[i] else "exact"
            removed.append(Removal(records[i].id, leaders.reason(i, keep), keep, kind, float(leaders.similarity[i])))
        return DedupResult(
            kept=[records[i] for i in clusters],
            removed=removed,
            clusters=[[records[i].id for i in members] for members in clusters.values() if len(members) > 1],
        )


def find_leaders(fingerprints: Fingerprints, record_of: Callable[[int], Any], *, threshold: float = 0.85) -> Leaders:
    """Decide every row from its fingerprint: the first row with its exact key leads it;
    an exact-unique row that is a verified near duplicate of an earlier kept row joins the
    most similar one (see the module docstring), and its exact copies follow it.

    Args:
        fingerprints: of all rows, in input order.
        record_of: row index → that row (task and texts); called only for pairs within
            the threshold, to compare their task and facts.
        threshold: as given to the `Fingerprinter`.
    """
    n = len(fingerprints)
    exact_of = _exact_firsts(fingerprints.keys)
    with _gc_paused():
        near_of = {} if fingerprints.bands is None else _near_leaders(fingerprints, exact_of, record_of, threshold)
    lead_of_first = np.full(n, -1, np.int64)
    similarity = np.ones(n)
    for first, (lead, sim) in near_of.items():
        lead_of_first[first], similarity[first] = lead, sim
    lead_of_first, similarity = lead_of_first[exact_of], similarity[exact_of]
    near = lead_of_first >= 0
    return Leaders(np.where(near, lead_of_first, exact_of), near, np.where(near, similarity, 1.0))


def _exact_firsts(keys: np.ndarray) -> np.ndarray:
    """For each row, the index of the first row with the same exact key."""
    if not len(keys):
        return np.empty(0, np.int64)
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    return first[inverse.reshape(-1)].astype(np.int64)


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
    fp: Fingerprints, exact_of: np.ndarray, record_of: Callable[[int], Any], threshold: float
) -> dict[int, tuple[int, float]]:
    """Map each exact-unique row that near-duplicates an earlier kept row to (that row, jaccard).

    Rows are swept in input order with one table per band of the kept rows in its buckets,
    so every candidate is a possible leader. Only buckets that two rows share can hold a
    candidate: they are found first with a sort per band, and the tables hold only them.
    """
    n = len(fp)
    rows = np.flatnonzero((exact_of == np.arange(n)) & (fp.sizes > 0))
    buckets = _shared_buckets(fp.bands[rows])
    in_shared = (buckets >= 0).any(axis=1)
    rows, buckets = rows[in_shared], buckets[in_shared]
    starts = np.concatenate([[0], np.cumsum(fp.sizes, dtype=np.int64)])
    docs = lru_cache(maxsize=_DOCS_CACHED)(lambda j: _Doc(record_of(j)))
    tables: dict[int, list[int]] = {}
    leaders = {}
    step = 65_536  # rows turned into Python lists at a time
    for at in range(0, len(rows), step):
        for i, ids in zip(rows[at:at + step].tolist(), buckets[at:at + step].tolist()):
            ids = [b for b in ids if b >= 0]
            candidates = set()
            for b in ids:
                candidates.update(tables.get(b, ()))
            if candidates and (leader := _best_leader(i, candidates, fp, starts, docs, threshold)):
                leaders[i] = leader
            else:
                for b in ids:
                    tables.setdefault(b, []).append(i)
    return leaders


def _shared_buckets(bands: np.ndarray) -> np.ndarray:
    """Per row and band, an id of the band's bucket (the rows with that band key) where
    another row shares it, else -1. Ids are unique across bands."""
    m, b = bands.shape
    out = np.full((m, b), -1, np.int32 if m * b < 2**31 else np.int64)
    offset = 0
    for band in range(b):
        _, inverse, counts = np.unique(bands[:, band], return_inverse=True, return_counts=True)
        inverse = inverse.reshape(-1)
        shared = counts[inverse] > 1
        out[shared, band] = inverse[shared] + offset
        offset += len(counts)
    return out


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


def _band_keys(signatures: np.ndarray, bands: int, rows: int, seed: int) -> np.ndarray:
    """One 64-bit key per row and band: an odd-weighted sum of the band's values. Two
    different bands share a key with odds near 2^-64, and a shared key only adds a
    candidate that verification rejects."""
    weights = np.random.default_rng(seed).integers(0, 2**63, size=rows, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    keys = [(signatures[:, b * rows:(b + 1) * rows].astype(np.uint64) * weights).sum(axis=1) for b in range(bands)]
    return np.stack(keys, axis=1)


def _best_leader(
    i: int, candidates: set[int], fp: Fingerprints, starts: np.ndarray, docs: Callable, threshold: float
) -> tuple[int, float] | None:
    """The most similar verified candidate, the earliest on a tie. Similarities are
    computed for all candidates at once on the shingle arrays; candidates of another task,
    or whose shingle count alone rules the threshold out (Jaccard is at most the smaller
    count over the larger), are dropped first."""
    cand = np.fromiter(sorted(candidates), np.int64, len(candidates))
    size = int(fp.sizes[i])
    sizes = fp.sizes[cand].astype(np.int64)
    possible = (fp.tasks[cand] == fp.tasks[i]) & (np.minimum(sizes, size) / np.maximum(sizes, size) >= threshold)
    cand, sizes = cand[possible], sizes[possible]
    if not len(cand):
        return None
    mine = fp.shingles[starts[i]:starts[i] + size]
    offsets = np.cumsum(sizes) - sizes
    theirs = fp.shingles[np.arange(int(sizes.sum())) + np.repeat(starts[cand] - offsets, sizes)]
    found = mine[np.minimum(np.searchsorted(mine, theirs), size - 1)] == theirs
    shared = np.add.reduceat(found.astype(np.int64), offsets)
    sims = shared / (size + sizes - shared)
    within = sims >= threshold
    leader, best = None, 0.0
    for j, sim in zip(cand[within].tolist(), sims[within].tolist()):
        if sim > best:
            a, b = docs(i), docs(j)
            if a.task == b.task and _same_facts(a, b):
                leader, best = j, sim
    return None if leader is None else (leader, round(best, 3))


def _as_is(value: int) -> int:
    """The shingles are hashed already (crc32: stable across processes, unlike hash())."""
    return value


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
