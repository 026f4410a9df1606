"""What the monitor measures of each request's input and output, for one side of a comparison
(the reference or the current window): a `Profile`.

Input features (their share that drifted is the input-drift verdict):
- source_chars, job_description_chars: lengths of the CV text and of the job description
  (requests with one); source_tokens, job_description_tokens: the same in the model's tokens;
- task: the mix of rewrite_bullet / tailor_section / summary;
- language: py3langid's guess for the CV text;
- non_letter_share: characters that are neither letters nor spaces (digits, symbols, markup);
- oov_rate: share of the input's words the model's training vocabulary lacks;
- input_text: the words themselves, for the domain classifier (`cvml.monitor.classifier`).
Output features (reported, not part of the verdict: the model's outputs differ from its
training targets by nature): output_chars and output_input_ratio.

Lengths and the task are read from every row; the features that read the text (tokens,
language, non-letter share, OOV, the classifier) from a seeded sample of at most
`max_text_rows` rows, in time order, which keeps a 100,000-request report fast.
Text is the log's redacted text, or the curated (redacted) training split; PII
placeholders (`<EMAIL_1>`) are left out of every text feature.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from cvml.data.vocabulary import Vocabulary, words
from cvml.monitor.logrows import Request
from cvml.recipe import MONITOR_INPUT_FEATURES, MONITOR_OUTPUT_FEATURES

_PLACEHOLDER = re.compile(r"<[A-Z_]+_\d+>")
# Languages the identifier chooses among: those a CV product meets most; short texts
# otherwise get exotic guesses. Anything else is identified as the nearest of these.
LANGUAGES = ("en", "de", "fr", "es", "it", "pt", "nl", "pl", "sv", "da", "no", "fi", "cs", "ro", "hu", "tr", "ru",
             "uk", "el", "ar", "he", "hi", "zh", "ja", "ko", "id", "vi")  # fmt: skip
NUMERIC = ("source_chars", "source_tokens", "job_description_chars", "job_description_tokens", "non_letter_share",
           "oov_rate", "output_chars", "output_input_ratio")  # fmt: skip
CATEGORICAL = ("task", "language")
TEXT = ("input_text",)
ALL = MONITOR_INPUT_FEATURES + MONITOR_OUTPUT_FEATURES  # the recipe's names: NUMERIC + CATEGORICAL + TEXT


def kind_of(feature: str) -> str:
    return "numeric" if feature in NUMERIC else "categorical" if feature in CATEGORICAL else "text"


def group_of(feature: str) -> str:
    return "output" if feature in MONITOR_OUTPUT_FEATURES else "input"


@dataclass
class Profile:
    """One side of a comparison: its rows and each feature's values (time order kept), with
    the group (person) of each value, which calibration keeps together."""

    kind: str  # "training" or "log"
    label: str
    rows: list[Request]
    values: dict[str, Any] = field(default_factory=dict)  # feature -> np.ndarray (numeric) or list[str]
    groups: dict[str, np.ndarray] = field(default_factory=dict)  # feature -> group code of each value
    texts: list[str] = field(default_factory=list)  # the sample's input texts (classifier)
    text_groups: list[str] = field(default_factory=list)
    sample: list[int] = field(default_factory=list)  # indices of the rows the text features read
    missing: dict[str, str] = field(default_factory=dict)  # feature -> why it was not measured
    notes: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.rows)


def build_profile(
    kind: str,
    label: str,
    rows: list[Request],
    *,
    vocabulary: Vocabulary | None,
    tokenizer: Any,
    max_text_rows: int,
    seed: int,
) -> Profile:
    """Every feature of `rows` (a training split's rows measure their OOV rate leaving their person out)."""
    profile = Profile(kind, label, rows)
    codes: dict[str, int] = {}
    group = [codes.setdefault(r.group, len(codes)) for r in rows]

    def put(name: str, pairs, categorical: bool = False) -> None:
        kept = [(value, g) for value, g in pairs if value is not None]
        store(name, [value for value, _ in kept], [g for _, g in kept], categorical)

    def store(name: str, values: list, groups: list[int], categorical: bool = False) -> None:
        profile.values[name] = values if categorical else np.asarray(values, dtype=float)
        profile.groups[name] = np.asarray(groups, dtype=np.int64)

    # Every row's figures in one pass (a 100,000-request window is read here).
    names = ("source_chars", "job_description_chars", "task", "output_chars", "output_input_ratio")
    found: dict[str, tuple[list, list]] = {name: ([], []) for name in names}
    for r, g in zip(rows, group):
        if r.source_chars is not None:
            found["source_chars"][0].append(r.source_chars)
            found["source_chars"][1].append(g)
        if r.job_description_chars:
            found["job_description_chars"][0].append(r.job_description_chars)
            found["job_description_chars"][1].append(g)
        if r.task:
            found["task"][0].append(r.task)
            found["task"][1].append(g)
        if r.output is not None and r.status < 400:
            found["output_chars"][0].append(len(r.output))
            found["output_chars"][1].append(g)
            if r.source_chars:
                found["output_input_ratio"][0].append(len(r.output) / r.source_chars)
                found["output_input_ratio"][1].append(g)
    for name, (values, groups) in found.items():
        store(name, values, groups, categorical=name == "task")
    with_text = [i for i, r in enumerate(rows) if r.source is not None]
    if not with_text:
        reason = "the log keeps no text of these requests (serve.log_text: none)" if kind == "log" else "no text"
        if rows and any(r.unsplit for r in rows):
            reason = "their inputs were logged before serve kept the sizes that split text and job description"
        profile.notes.append(f"{label}: text features not measured: {reason}")
        for name in ("source_tokens", "job_description_tokens", "non_letter_share", "oov_rate", "language", "input_text"):
            profile.missing[name] = f"no text on the {'reference' if kind == 'training' else kind} side"
        return profile
    if len(with_text) > max_text_rows:
        rng = np.random.default_rng(seed)
        with_text = sorted(rng.choice(with_text, size=max_text_rows, replace=False).tolist())
    profile.sample = with_text
    sample = [(rows[i], group[i]) for i in with_text]
    sources = [(_clean(r.source), g) for r, g in sample]
    jobs = [(_clean(r.job_description), g) for r, g in sample if r.job_description]
    if tokenizer is not None:
        put("source_tokens", zip(_token_counts(tokenizer, [t for t, _ in sources]), (g for _, g in sources)))
        put("job_description_tokens", zip(_token_counts(tokenizer, [t for t, _ in jobs]), (g for _, g in jobs)))
    else:
        profile.missing["source_tokens"] = profile.missing["job_description_tokens"] = "no tokenizer of the model"
    put("non_letter_share", ((non_letter_share(t), g) for t, g in sources))
    put("language", ((language(t), g) for t, g in sources), categorical=True)
    if vocabulary is not None:
        own = _person_counts(rows) if kind == "training" else {}
        put("oov_rate", ((vocabulary.oov_rate(r.input_text, leave_out=own.get(r.group) if own else None), g)
                         for r, g in sample))  # fmt: skip
    else:
        profile.missing["oov_rate"] = "no training vocabulary of the model"
    profile.texts = [_clean(r.input_text) for r, _ in sample]
    profile.text_groups = [r.group for r, _ in sample]
    return profile


def _person_counts(rows: list[Request]) -> dict[str, Counter]:
    """Each person's word counts over every text of theirs the vocabulary was built from."""
    counts: dict[str, Counter] = {}
    for r in rows:
        mine = counts.setdefault(r.group, Counter())
        for text in (r.source, r.job_description, r.output):
            if text:
                mine.update(words(text))
    return counts


def non_letter_share(text: str) -> float | None:
    """Share of the non-space characters that are not letters (None: no such character)."""
    chars = [c for c in text if not c.isspace()]
    if not chars:
        return None
    return sum(not c.isalpha() for c in chars) / len(chars)


def language(text: str) -> str:
    """The text's language (ISO 639-1) among LANGUAGES; "unknown" when it holds no letter."""
    if not any(c.isalpha() for c in text):
        return "unknown"
    return _identifier().classify(text)[0]


@lru_cache(maxsize=1)
def _identifier():
    """py3langid's model restricted to LANGUAGES, loaded once (about 0.5 s)."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    identifier = LanguageIdentifier.from_model_file(MODEL_FILE)
    identifier.set_languages(list(LANGUAGES))
    return identifier


def _clean(text: str | None) -> str:
    return _PLACEHOLDER.sub(" ", text or "")


def _token_counts(tokenizer: Any, texts: list[str]) -> list[int]:
    if not texts:
        return []
    return [len(e.ids) for e in tokenizer.encode_batch(texts, add_special_tokens=False)]


