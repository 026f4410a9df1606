"""The per-row stages of `cvml curate`, run where the rows are: in this process, in a
worker process, or in a Ray actor.

`RowStages.run(shard)` reads one shard and takes each row through schema → normalize
(+ length limits) → PII redaction → quality filters → decontamination, and fingerprints
the rows that pass for dedup. It returns a `ShardOutcome`: each row's verdict, in order,
with the PII it held, and the candidates to keep, ready to write. A verdict never depends
on another shard, so a shard's outcome is the same wherever it was computed.

What needs the whole run stays with the driver (`cvml.curate.pipeline`): the suppression
list (its keys never leave the driver), the PII index, the ledgers, dedup's decisions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from cvml.curate.normalize import normalize_text
from cvml.curate.output import COLUMNS, quarantine_key
from cvml.curate.readers import RawRow, Shard, map_columns, read_shard
from cvml.data.records import Record, validate_row
from cvml.recipe import CurateSpec

QUARANTINE, REMOVE, KEEP = "quarantine", "remove", "keep"
# Record fields in schema order: a set would order a quarantined row's keys by the
# process's string hash seed, which differs between workers.
_FIELDS = tuple(Record.model_fields)


@dataclass
class Verdict:
    """One input row's fate. `spans` are the (type, value) of the PII it held, for the
    suppression list and the PII index (filed under `index_key`); `line` is its ledger
    entry (quarantine or removed), None for a candidate to keep."""

    kind: str  # QUARANTINE, REMOVE or KEEP
    stage: str | None
    group: str | None
    index_key: str | None
    spans: list[tuple[str, str]]
    line: str | None = None


@dataclass
class ShardOutcome:
    """A shard's verdicts in input order and, for its KEEP verdicts in the same order, the
    rows as JSON lines (`COLUMNS`, meta as JSON text), their (source, target) lengths and
    their dedup fingerprints (None when dedup is off)."""

    rows: int
    verdicts: list[Verdict]
    kept: bytes
    lengths: np.ndarray  # (k, 2) int32
    fingerprints: Any | None


class RowStages:
    """The per-row stages and their settings. Pickles as its settings only: each process
    builds the redactor, filters and fingerprinter once (`prepare`, or on the first shard).

    Args:
        spec: the recipe's curate section.
        tokenizer: measures length limits in tokens; None counts words.
        names: person names to redact (curate.pii.names_file, read by the driver).
        eval_texts: texts of the eval sets that training rows may not overlap.
        detect_types: PII types to look for even with redaction off (the suppression
            list's value types, so an erased value is recognised).
    """

    def __init__(self, spec: CurateSpec, *, tokenizer=None, names: list[str] = (), eval_texts: list[str] = (),
                 detect_types: list[str] = ()):
        self.spec, self.tokenizer = spec, tokenizer
        self.names, self.eval_texts, self.detect_types = list(names), list(eval_texts), list(detect_types)
        self._built: dict[str, Any] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_built": None}

    @property
    def bands(self) -> int | None:
        """LSH bands per fingerprint (None: no near dedup)."""
        fingerprinter = self.prepare()["fingerprinter"]
        return None if fingerprinter is None else fingerprinter.bands

    def prepare(self) -> dict[str, Any]:
        """Build what the stages use (once per process).

        Raises:
            ConfigError: an unknown PII type.
        """
        if self._built is None:
            from cvml.curate.decontam import Decontaminator
            from cvml.curate.dedup import Fingerprinter
            from cvml.curate.filters import FilterConfig
            from cvml.safety.pii import PiiRedactor

            spec = self.spec
            redactor = PiiRedactor(types=spec.pii.types, names=self.names) if spec.pii.enabled else None
            dedup = spec.dedup
            self._built = {
                "redactor": redactor,
                # With redaction off, erased values are still looked for (and only those types).
                "detector": redactor or (PiiRedactor(types=self.detect_types) if self.detect_types else None),
                "filters": FilterConfig(min_target_words=spec.filters.min_target_words, languages=tuple(spec.filters.languages),
                                        grounded=spec.filters.grounded, harmful=spec.filters.harmful),
                "decontam": Decontaminator(self.eval_texts, n=spec.decontaminate.ngram) if self.eval_texts else None,
                "fingerprinter": Fingerprinter(near=dedup.near, threshold=dedup.threshold, num_perm=dedup.num_perm)
                if dedup.enabled else None,
            }
        return self._built

    def run(self, shard: Shard) -> ShardOutcome:
        """Every row of `shard` through the per-row stages."""
        built = self.prepare()
        spec = self.spec
        verdicts: list[Verdict] = []
        valid: list[tuple[int, RawRow, Record]] = []
        n = 0
        for raw in read_shard(shard):
            n += 1
            if raw.error is not None:
                verdicts.append(self._quarantine("read", raw, raw.error))
            elif not isinstance(raw.row, dict):
                verdicts.append(self._quarantine("read", raw, f"row is a {type(raw.row).__name__}, not an object"))
            else:
                row = map_columns(raw.row, spec.columns, _FIELDS)
                record, reason = validate_row(row)
                if record is None:
                    verdicts.append(self._quarantine("schema", raw, reason, row))
                else:
                    valid.append((len(verdicts), raw, _normalized(record, spec.normalize.fix_mojibake)))
                    verdicts.append(None)  # decided below, once lengths are counted in one batch

        kept: list[Record] = []
        lengths: list[tuple[int, int]] = []
        unit = "tokens" if self.tokenizer is not None else "words"
        limits = spec.normalize
        for (at, raw, record), (n_src, n_tgt) in zip(valid, _lengths([r for _, _, r in valid], self.tokenizer)):
            if n_src > limits.max_source_tokens or n_tgt > limits.max_target_tokens:
                verdicts[at] = self._quarantine(
                    "length", raw,
                    f"source {n_src} / target {n_tgt} {unit} exceed limits "
                    f"{limits.max_source_tokens} / {limits.max_target_tokens}",
                    record.model_dump(),
                )
                continue
            verdicts[at], record = self._decide(record)
            if verdicts[at].kind == KEEP:
                kept.append(record)
                lengths.append((n_src, n_tgt))
        fingerprinter = built["fingerprinter"]
        return ShardOutcome(
            rows=n,
            verdicts=verdicts,
            kept=b"".join(_row_line(record) for record in kept),
            lengths=np.array(lengths, np.int32).reshape(-1, 2),
            fingerprints=fingerprinter(kept) if fingerprinter is not None else None,
        )

    def _decide(self, record: Record) -> tuple[Verdict, Record]:
        """PII, then filters, then decontamination, for a well-formed row of allowed length."""
        from cvml.curate.filters import apply_filters
        from cvml.safety.pii import Placeholders

        built = self.prepare()
        spans: list[tuple[str, str]] = []
        if built["detector"] is not None:
            redacted, spans = _redact_record(built["detector"], Placeholders(), record)
            record = redacted if built["redactor"] is not None else record
        group = record.group
        if self.spec.filters.enabled and (reason := apply_filters(record, built["filters"])):
            return Verdict(REMOVE, "filter", group, group, spans, _removed_line("filter", record, reason)), record
        decontam = built["decontam"]
        if decontam is not None and (reason := decontam.check(record.source_text) or decontam.check(record.target)):
            return Verdict(REMOVE, "decontaminate", group, group, spans, _removed_line("decontaminate", record, reason)), record
        return Verdict(KEEP, None, group, group, spans), record

    def _quarantine(self, stage: str, raw: RawRow, reason: str, row: Any = None) -> Verdict:
        """A malformed row, redacted like a kept one (one placeholder scope for the row: a
        name in the header is found in the target too) and filed in the PII index under
        its group, or under its ledger line when it has none."""
        built = self.prepare()
        value = row if row is not None else raw.row
        group = value.get("group") if isinstance(value, dict) and isinstance(value.get("group"), str) else None
        spans: list[tuple[str, str]] = []
        if built["detector"] is not None:
            redacted, spans = _redact_row(built["detector"], value)
            if built["redactor"] is not None:
                value, reason = redacted, built["redactor"].redact(reason)[0]
        entry = {"stage": stage, "source": raw.source, "line": raw.line, "group": group, "reason": reason, "row": value}
        line = json.dumps(entry, ensure_ascii=False, default=str) + "\n"
        return Verdict(QUARANTINE, stage, group, group or quarantine_key(raw.source, raw.line), spans, line)


def removed_line(stage: str, row_id: str, group: str | None, reason: str, kept_id: str | None = None) -> str:
    """One removed.jsonl entry."""
    entry = {"stage": stage, "id": row_id, "group": group, "reason": reason, "kept_id": kept_id}
    return json.dumps(entry, ensure_ascii=False) + "\n"


def _removed_line(stage: str, record: Record, reason: str) -> str:
    return removed_line(stage, record.id, record.group, reason)


def _row_line(record: Record) -> bytes:
    values = [getattr(record, c) for c in COLUMNS[:-1]] + [json.dumps(record.meta, ensure_ascii=False)]
    return (json.dumps(values, ensure_ascii=False) + "\n").encode("utf-8")


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
