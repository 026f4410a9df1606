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

Inputs are streamed; what survives the per-row stages is held until dedup, which needs
every row (near duplicates can be anywhere in the input).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from cvml.curate.normalize import normalize_text
from cvml.curate.output import open_private, quarantine_key
from cvml.curate.readers import RawRow, iter_raw, map_columns
from cvml.data.records import Record, validate_row
from cvml.data.split import group_bucket
from cvml.errors import DataError
from cvml.recipe import CurateSpec

_CHUNK = 1024


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
    """Counts and the two ledgers (quarantine, removed), written as the run goes.

    `redactor` redacts (None: PII redaction is off); `detector` finds PII for the
    suppression list even then."""

    def __init__(self, out: Path, redactor, detector, index, suppression):
        self.quarantined: Counter[str] = Counter()
        self.removed: Counter[str] = Counter()
        self.pii: Counter[str] = Counter()
        self._q = open_private(out / "quarantine.jsonl")
        self._r = open_private(out / "removed.jsonl")
        self._redactor, self._detector = redactor, detector
        self._index, self._suppression = index, suppression

    def quarantine(self, stage: str, raw: RawRow, reason: str, row: Any = None) -> None:
        value = row if row is not None else raw.row
        group = value.get("group") if isinstance(value, dict) and isinstance(value.get("group"), str) else None
        spans: list[tuple[str, str]] = []
        if self._detector is not None:
            # Quarantined rows never reached the PII stage: redact them here, with one
            # placeholder scope for the row (a name in the header is found in the target too).
            redacted, spans = _redact_row(self._detector, value)
            if self._redactor is not None:
                value, reason = redacted, self._redactor.redact(reason)[0]
        if self._suppression.matches(group, spans):
            self.erase()
            return
        self.quarantined[stage] += 1
        if self._redactor is not None:
            # Indexed under the group, or under the ledger line when the row has none, so
            # `forget` can find this person's quarantined rows by value.
            key = group or quarantine_key(raw.source, raw.line)
            for pii_type, text in spans:
                self.pii[pii_type] += 1
                self._index.add(pii_type, text, key)
        entry = {"stage": stage, "source": raw.source, "line": raw.line, "group": group, "reason": reason, "row": value}
        self._q.write(json.dumps(entry, ensure_ascii=False, default=str) + "\n")

    def erase(self) -> None:
        """A row of an erased person: counted and noted, with neither its id nor its group."""
        self.removed["erased"] += 1
        self._r.write(json.dumps({"stage": "erased", "reason": "erased on request (suppression list)"}) + "\n")

    def remove(self, stage: str, record: Record, reason: str, kept_id: str | None = None) -> None:
        self.removed[stage] += 1
        entry = {"stage": stage, "id": record.id, "group": record.group, "reason": reason, "kept_id": kept_id}
        self._r.write(json.dumps(entry, ensure_ascii=False) + "\n")

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
        spec: the recipe's curate section.
        output: dataset folder (created; an existing dataset there is replaced).
        tokenizer: a HF tokenizer for length limits in tokens; None measures in words.
        recipe: the resolved recipe, recorded in the manifest.
        progress: called with the number of input rows read so far.

    Returns:
        CurateResult; the same figures land in report.json.

    Raises:
        DataError: an input is missing or unreadable, or no row survives.
    """
    from cvml.curate.decontam import Decontaminator
    from cvml.curate.dedup import deduplicate
    from cvml.curate.filters import FilterConfig, apply_filters
    from cvml.curate.pii_index import PiiIndex
    from cvml.curate.suppression import SuppressionList
    from cvml.safety.pii import Placeholders, PiiRedactor

    started = time.perf_counter()
    out = Path(output)
    suppression = SuppressionList.load()  # first: a list that cannot be applied stops the run
    erasures = _prepare_output(out)
    redactor = PiiRedactor(types=spec.pii.types, names=_read_names(spec.pii.names_file)) if spec.pii.enabled else None
    # With redaction off, erased values are still looked for (and only those types).
    detector = redactor or (PiiRedactor(types=suppression.value_types) if suppression.value_types else None)
    index = PiiIndex.create(out)
    books = _Books(out, redactor, detector, index, suppression)
    filter_cfg = FilterConfig(min_target_words=spec.filters.min_target_words, languages=tuple(spec.filters.languages),
                              grounded=spec.filters.grounded, harmful=spec.filters.harmful)
    decontam = _decontaminator(spec, Decontaminator)
    fields = set(Record.model_fields)
    unit = "tokens" if tokenizer is not None else "words"

    kept: list[Record] = []
    lengths: dict[str, tuple[int, int]] = {}
    n_in = 0
    for chunk in _chunks(_all_rows(spec.inputs), _CHUNK):
        n_in += len(chunk)
        valid: list[tuple[RawRow, Record]] = []
        for raw in chunk:
            if raw.error is not None:
                books.quarantine("read", raw, raw.error)
                continue
            if not isinstance(raw.row, dict):
                books.quarantine("read", raw, f"row is a {type(raw.row).__name__}, not an object")
                continue
            row = map_columns(raw.row, spec.columns, fields)
            record, reason = validate_row(row)
            if record is None:
                books.quarantine("schema", raw, reason, row)
                continue
            valid.append((raw, _normalized(record, spec.normalize.fix_mojibake)))
        for (raw, record), (n_src, n_tgt) in zip(valid, _lengths([r for _, r in valid], tokenizer)):
            if n_src > spec.normalize.max_source_tokens or n_tgt > spec.normalize.max_target_tokens:
                books.quarantine(
                    "length", raw,
                    f"source {n_src} / target {n_tgt} {unit} exceed limits "
                    f"{spec.normalize.max_source_tokens} / {spec.normalize.max_target_tokens}",
                    record.model_dump(),
                )
                continue
            spans: list[tuple[str, str]] = []
            if detector is not None:
                redacted, spans = _redact_record(detector, Placeholders(), record)
                record = redacted if redactor is not None else record
            if suppression.matches(record.group, spans):
                books.erase()
                continue
            if redactor is not None:
                for pii_type, text in spans:
                    books.pii[pii_type] += 1
                    index.add(pii_type, text, record.group)
            if spec.filters.enabled and (reason := apply_filters(record, filter_cfg)):
                books.remove("filter", record, reason)
                continue
            if decontam is not None and (reason := _contaminated(decontam, record)):
                books.remove("decontaminate", record, reason)
                continue
            kept.append(record)
            lengths[record.id] = (n_src, n_tgt)
        if progress is not None:
            progress(n_in)

    dedup = None
    if spec.dedup.enabled:
        dedup = deduplicate(kept, near=spec.dedup.near, threshold=spec.dedup.threshold, num_perm=spec.dedup.num_perm)
    if dedup is not None:
        by_id = {r.id: r for r in kept}
        for removal in dedup.removed:
            books.remove(f"dedup_{removal.kind}", by_id[removal.id], removal.reason, removal.kept_id)
        kept = dedup.kept
    books.close()
    index.close()
    if not kept:
        raise DataError(f"no row survived curation ({n_in} read)", hint=f"See {out / 'quarantine.jsonl'} and removed.jsonl.")

    from cvml.curate.output import write_report, write_splits

    kept_counts, split_lengths = write_splits(out, kept, lambda r: assign_split(r.group, spec), lengths)
    seconds = time.perf_counter() - started
    result = CurateResult(
        output=str(out),
        input_rows=n_in,
        kept=kept_counts,
        quarantined=dict(books.quarantined),
        removed=dict(books.removed),
        pii=dict(books.pii),
        duplicate_clusters=len(dedup.clusters) if dedup is not None else 0,
        seconds=round(seconds, 2),
        records_per_s=round(n_in / max(seconds, 1e-9), 1),
        length_unit=unit,
    )
    result.files = write_report(
        out, result, spec, dedup, split_lengths, recipe, erasures=erasures,
        suppression={"entries": len(suppression), "rows_removed": books.removed.get("erased", 0)},
    )
    return result


def assign_split(group: str, spec) -> str:
    """Deterministic split by group: the same person always lands in the same split."""
    bucket = group_bucket(group, spec.split.seed)
    if bucket < spec.split.train:
        return "train"
    if bucket < spec.split.train + spec.split.validation:
        return "validation"
    return "test"


def _all_rows(inputs: Iterable[str]) -> Iterator[RawRow]:
    for path in inputs:
        yield from iter_raw(path)


def _chunks(rows: Iterator[RawRow], size: int) -> Iterator[list[RawRow]]:
    chunk: list[RawRow] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _normalized(record: Record, fix_mojibake: bool) -> Record:
    jd = record.job_description
    return record.model_copy(update={
        "source_text": normalize_text(record.source_text, fix_mojibake),
        "target": normalize_text(record.target, fix_mojibake),
        "job_description": normalize_text(jd, fix_mojibake) if jd else None,
    })


def _lengths(records: list[Record], tokenizer) -> list[tuple[int, int]]:
    """(source + job description, target) lengths in tokens, or words without a tokenizer."""
    if not records:
        return []
    sources = [r.source_text + ("\n" + r.job_description if r.job_description else "") for r in records]
    targets = [r.target for r in records]
    return list(zip(count_tokens(sources, tokenizer), count_tokens(targets, tokenizer)))


def count_tokens(texts: list[str], tokenizer) -> list[int]:
    if tokenizer is None:
        return [len(t.split()) for t in texts]
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:  # the Rust tokenizer directly: no Python-side conversion of every id
        return [len(e.ids) for e in backend.encode_batch(texts, add_special_tokens=False)]
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def _redact_record(redactor, placeholders, record: Record) -> tuple[Record, list[tuple[str, str]]]:
    """Redact source, job description and target with one placeholder scope, so the same
    email in source and target becomes the same <EMAIL_1>; returns the record and the
    (type, value) of every span found, for the suppression list and the index."""
    update = {}
    found: list[tuple[str, str]] = []
    for name in ("source_text", "job_description", "target"):
        text = getattr(record, name)
        if not text:
            continue
        redacted, spans = redactor.redact(text, placeholders)
        if spans:
            update[name] = redacted
            found += [(span.type, span.text) for span in spans]
    if not update:
        return record, found
    return record.model_copy(update={**update, "meta": {**record.meta, "pii_redacted": True}}), found


# The text fields first, in this order, so that a name a header reveals is known (and found
# again) in the rest of the row.
_FIRST = {"source_text": 0, "job_description": 1, "target": 2}


def _redact_row(redactor, value: Any) -> tuple[Any, list[tuple[str, str]]]:
    """Any row (a dict, a list, a scalar) redacted with one placeholder scope, and the
    (type, value) of every span found."""
    from cvml.safety.pii import Placeholders

    scope = Placeholders()
    found: list[tuple[str, str]] = []

    def walk(item: Any) -> Any:
        if isinstance(item, str):
            redacted, spans = redactor.redact(item, scope)
            found.extend((span.type, span.text) for span in spans)
            return redacted
        if isinstance(item, dict):
            done = {k: walk(item[k]) for k in sorted(item, key=lambda k: _FIRST.get(k, len(_FIRST)))}
            return {k: done[k] for k in item}
        if isinstance(item, (list, tuple)):
            return [walk(v) for v in item]
        return item

    return walk(value), found



def _decontaminator(spec: CurateSpec, cls):
    if not spec.decontaminate.eval_sets:
        return None
    texts: list[str] = []
    for path in spec.decontaminate.eval_sets:
        texts.extend(cls.load_eval_texts(path))
    return cls(texts, n=spec.decontaminate.ngram)


def _contaminated(decontam, record: Record) -> str | None:
    return decontam.check(record.source_text) or decontam.check(record.target)


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
