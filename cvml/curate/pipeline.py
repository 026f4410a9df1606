"""`cvml curate`: raw rows → a clean, private, leak-free dataset with an audit trail.

Stages, in order, each counted: read → schema → normalize (+ length limits) → PII
redaction → quality filters → decontamination → exact/near dedup → split by group.
Rows that are malformed go to quarantine.jsonl; rows that are well-formed but unwanted
(filtered, contaminated, duplicate) go to removed.jsonl; both say why. The books always
balance: input rows = kept + quarantined + removed.

Erased people stay erased: every row, kept or quarantined, is checked against the
suppression list (`cvml.curate.suppression`, outside any dataset) and a row of an erased
group, or holding an erased value, is removed with reason "erased" (counted, never listed
by id or group). Quarantined rows are redacted like kept ones (one placeholder scope per
row) and indexed too, so `forget` finds a person whose every row was malformed. A re-run
over an existing dataset keeps its erasure record in the new manifest.

How it runs: inputs are cut into shards; the per-row stages run on each shard where the
engine puts them (`cvml.curate.engines`: this process, one worker process per core, or
Ray) and come back in shard order. This process keeps the books as they arrive (ledgers,
PII index, suppression list), appends the rows that pass to a spill file and keeps only
their dedup fingerprints; once every row is in, dedup decides from the fingerprints and
one pass over the spill writes the splits. Memory grows by a few hundred bytes a row,
not with the rows' text, and the output does not depend on the engine.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from cvml.curate.output import open_private
from cvml.curate.stages import KEEP, QUARANTINE, ShardOutcome, removed_line
from cvml.data.split import group_bucket
from cvml.errors import DataError
from cvml.recipe import CurateSpec

_CLUSTER_EXAMPLES = 20


@dataclass
class CurateResult:
    output: str
    input_rows: int
    kept: dict[str, int]
    quarantined: dict[str, int]
    removed: dict[str, int]
    pii: dict[str, int]
    duplicate_clusters: int
    seconds: float
    records_per_s: float
    length_unit: str
    files: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "balanced": self.balanced}

    @property
    def balanced(self) -> bool:
        return self.input_rows == sum(self.kept.values()) + sum(self.quarantined.values()) + sum(self.removed.values())


class _Books:
    """Counts, the two ledgers (quarantine, removed) and the PII index, written as shard
    outcomes arrive; the candidates to keep go to the spill, their fingerprints and lengths
    stay here. With redaction on (`indexing`), every PII value is indexed and counted."""

    def __init__(self, out: Path, spill, index, suppression, indexing: bool):
        self.input_rows = 0
        self.quarantined: Counter[str] = Counter()
        self.removed: Counter[str] = Counter()
        self.pii: Counter[str] = Counter()
        self.fingerprints: list = []
        self.lengths: list[np.ndarray] = []
        self._q = open_private(out / "quarantine.jsonl")
        self._r = open_private(out / "removed.jsonl")
        self._spill, self._index, self._suppression, self._indexing = spill, index, suppression, indexing

    def take(self, outcome: ShardOutcome) -> None:
        self.input_rows += outcome.rows
        keep = []
        for verdict in outcome.verdicts:
            if self._suppression.matches(verdict.group, verdict.spans):
                self.erase()
                if verdict.kind == KEEP:
                    keep.append(False)
                continue
            if self._indexing:
                for pii_type, text in verdict.spans:
                    self.pii[pii_type] += 1
                    self._index.add(pii_type, text, verdict.index_key)
            if verdict.kind == KEEP:
                keep.append(True)
            elif verdict.kind == QUARANTINE:
                self.quarantined[verdict.stage] += 1
                self._q.write(verdict.line)
            else:
                self.removed[verdict.stage] += 1
                self._r.write(verdict.line)
        mask = np.array(keep, bool)
        self._spill.append(outcome.kept, keep)
        self.lengths.append(outcome.lengths[mask])
        if outcome.fingerprints is not None:
            self.fingerprints.append(outcome.fingerprints if mask.all() else outcome.fingerprints.select(mask))

    def erase(self) -> None:
        """A row of an erased person: counted and noted, with neither its id nor its group."""
        self.removed["erased"] += 1
        self._r.write(json.dumps({"stage": "erased", "reason": "erased on request (suppression list)"}) + "\n")

    def remove(self, stage: str, row_id: str, group: str, reason: str, kept_id: str | None = None) -> None:
        self.removed[stage] += 1
        self._r.write(removed_line(stage, row_id, group, reason, kept_id))

    def close(self) -> None:
        self._q.close()
        self._r.close()


def curate(
    spec: CurateSpec,
    output: str | Path,
    *,
    tokenizer=None,
    recipe: dict[str, Any] | None = None,
    progress: Callable[[int], None] | None = None,
) -> CurateResult:
    """Run every stage and write the dataset folder.

    Args:
        spec: the recipe's curate section (engine, workers and shard size included).
        output: dataset folder (created; an existing dataset there is replaced).
        tokenizer: a HF tokenizer for length limits in tokens; None measures in words.
        recipe: the resolved recipe, recorded in the manifest.
        progress: called with the number of input rows read so far.

    Returns:
        CurateResult; the same figures land in report.json.

    Raises:
        DataError: an input is missing or unreadable, or no row survives.
        ConfigError: engine "ray" without Ray installed.
    """
    from cvml.curate.dedup import find_leaders
    from cvml.curate.engines import run_stages
    from cvml.curate.pii_index import PiiIndex
    from cvml.curate.readers import plan_shards
    from cvml.curate.spill import RowSpill
    from cvml.curate.stages import RowStages
    from cvml.curate.suppression import SuppressionList

    started = time.perf_counter()
    out = Path(output)
    suppression = SuppressionList.load()  # first: a list that cannot be applied stops the run
    erasures = _prepare_output(out)
    stages = RowStages(spec, tokenizer=tokenizer, names=_read_names(spec.pii.names_file),
                       eval_texts=_eval_texts(spec), detect_types=suppression.value_types)
    outcomes = run_stages(stages, plan_shards(spec.inputs, spec.shard_rows), engine=spec.engine,
                          workers=spec.workers, address=spec.address)
    index = PiiIndex.create(out)
    spill = RowSpill(out)
    books = _Books(out, spill, index, suppression, indexing=spec.pii.enabled)
    try:
        for outcome in outcomes:
            books.take(outcome)
            if progress is not None:
                progress(books.input_rows)
        index.close()
        if not len(spill):
            raise DataError(f"no row survived curation ({books.input_rows} read)",
                            hint=f"See {out / 'quarantine.jsonl'} and removed.jsonl.")
        lengths = np.concatenate(books.lengths)
        leaders = None
        if spec.dedup.enabled:
            from cvml.curate.dedup import Fingerprints

            fingerprints = Fingerprints.concat(books.fingerprints, stages.bands)
            books.fingerprints.clear()
            leaders = find_leaders(fingerprints, spill.record, threshold=spec.dedup.threshold)
            del fingerprints
        counts, split_lengths, clusters = _write(out, spill, lengths, leaders, books, spec)
    finally:
        outcomes.close()  # stops the workers when the run fails midway
        books.close()
        index.close()
        spill.delete()

    from cvml.curate.output import write_report

    seconds = time.perf_counter() - started
    result = CurateResult(
        output=str(out),
        input_rows=books.input_rows,
        kept=counts,
        quarantined=dict(books.quarantined),
        removed=dict(books.removed),
        pii=dict(books.pii),
        duplicate_clusters=len(clusters[0]),
        seconds=round(seconds, 2),
        records_per_s=round(books.input_rows / max(seconds, 1e-9), 1),
        length_unit="tokens" if tokenizer is not None else "words",
    )
    result.files = write_report(
        out, result, spec, split_lengths, recipe, cluster_sizes=clusters[0], cluster_examples=clusters[1],
        erasures=erasures, suppression={"entries": len(suppression), "rows_removed": books.removed.get("erased", 0)},
    )
    return result


def _write(out: Path, spill, lengths: np.ndarray, leaders, books: _Books, spec: CurateSpec):
    """One pass over the spilled rows: kept rows to their split, duplicates to removed.jsonl
    (after every other entry, in input order). Returns the counts and lengths per split and
    the duplicate clusters (sizes; ids of the first ones)."""
    from cvml.curate.output import SplitWriter

    sizes: list[int] = []
    examples: dict[int, list[str]] = {}
    if leaders is not None:
        cluster_leaders, cluster_sizes = leaders.cluster_leaders()
        sizes = cluster_sizes.tolist()
        examples = {lead: [] for lead in cluster_leaders[:_CLUSTER_EXAMPLES].tolist()}
        has_followers = set(cluster_leaders.tolist())
    leader = _values(leaders.leader if leaders is not None else np.arange(len(lengths)))
    kept_ids: dict[int, str] = {}  # the id of each leader with followers, met before its followers
    writer = SplitWriter(out)
    try:
        for i, (values, (n_src, n_tgt), lead) in enumerate(zip(spill.rows(), _values(lengths), leader)):
            row_id, group = values[0], values[5]
            if lead in examples:
                examples[lead].append(row_id)
            if lead == i:
                writer.add(assign_split(group, spec), values, n_src, n_tgt)
                if leaders is not None and i in has_followers:
                    kept_ids[i] = row_id
            else:
                kind = "near" if leaders.near[i] else "exact"
                books.remove(f"dedup_{kind}", row_id, group, leaders.reason(i, kept_ids[lead]), kept_ids[lead])
    finally:
        writer.close()
    return writer.counts, writer.lengths, (sizes, list(examples.values()))


def _values(array: np.ndarray, step: int = 65_536):
    """An array's items as Python values, converted a slice at a time."""
    for at in range(0, len(array), step):
        yield from array[at:at + step].tolist()


def assign_split(group: str, spec) -> str:
    """Deterministic split by group: the same person always lands in the same split."""
    bucket = group_bucket(group, spec.split.seed)
    if bucket < spec.split.train:
        return "train"
    if bucket < spec.split.train + spec.split.validation:
        return "validation"
    return "test"


def _eval_texts(spec: CurateSpec) -> list[str]:
    from cvml.curate.decontam import Decontaminator

    texts: list[str] = []
    for path in spec.decontaminate.eval_sets:
        texts.extend(Decontaminator.load_eval_texts(path))
    return texts


def _read_names(path: str | None) -> list[str]:
    if not path:
        return []
    file = Path(path)
    if not file.is_file():
        raise DataError(f"curate.pii.names_file not found: {path}")
    return [line.strip() for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]


def _prepare_output(out: Path) -> list[dict]:
    """Create the folder (owner-only); replace a previous dataset's files but refuse to
    clobber other data. Returns the replaced dataset's erasure events, to be kept; finishes
    an erasure a crash interrupted there first and deletes the old index's key."""
    from cvml.curate.output import private_dir
    from cvml.curate.pii_index import PiiIndex

    if out.exists() and any(out.iterdir()) and not (out / "manifest.json").is_file():
        raise DataError(
            f"{out} exists and is not a cvml dataset",
            hint="Choose another curate.output (or --out); cvml only replaces folders it wrote.",
        )
    erasures: list[dict] = []
    if (out / "manifest.json").is_file():
        from cvml.curate.forget import recover

        recover(out)
        try:
            erasures = list(json.loads((out / "manifest.json").read_text(encoding="utf-8")).get("erasures") or [])
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            erasures = []
        PiiIndex.discard_key(out)  # a new run, a new key: the old index is unreadable from here on
    private_dir(out)
    return erasures
