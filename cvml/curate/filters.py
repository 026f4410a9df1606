"""Quality filters tuned for CV text.

CV text is bullets and fragments: few stop words, many tools, acronyms and numbers. Web
filters that demand stop words or full sentences would reject most good CV rows, so
these filters look only at what makes a training pair useless or harmful: a target with
nothing in it, a target that repeats its source, a target whose length cannot be a
rewrite of its source, text in a language the model is not trained for, a target that
states facts its inputs do not (a pair that teaches a model to invent), and a target
that adds a protected attribute or abusive language, or inputs that carry a prompt
injection (the checks of `cvml.safety`, the same ones serve and bench run).

Each filter is `(record, cfg) -> reason | None`; `apply_filters` runs them in order and
returns the first reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable

_WORD = re.compile(r"\w+(?:[-'’]\w+)*")
# What a language identifier cannot read: whitespace-delimited tokens holding a digit,
# "@", "/" or "<>" (numbers, dates, emails, links, redaction placeholders), then symbols.
_UNREADABLE = re.compile(r"(?<!\S)\S*[\d@/<>]\S*|[^\w\s'’-]+|_")
_LETTER = re.compile(r"[^\W\d_]")
# English words that other languages' CV text does not use. Two of them settle that a
# text is English without the identifier, which costs about 1 µs per byte.
_ENGLISH = frozenset({"the", "and", "with", "using", "of", "for", "by", "from", "across", "into", "within", "while",
                      "through", "which", "their", "our"})

PLACEHOLDERS = frozenset({
    "n a", "na", "none", "nil", "null", "tbd", "tba", "tbc", "todo", "to do", "to be done", "to be determined",
    "not applicable", "same", "same as above", "see above", "see cv", "see resume", "no change", "no changes",
    "unchanged", "lorem ipsum", "xxx", "test",
})
# Target words / source words per task. Rewrites tighten a loose source (synthetic
# rows: 0.17-0.92, the low end with contact details in the source); tailored sections
# keep their bullets and add a skills line (0.71-1.6); summaries condense notes
# (0.63-1.2) but may condense a whole CV. Beyond the upper bounds a target must add
# content its source lacks: fabrication.
LENGTH_RATIOS: dict[str, tuple[float, float]] = {
    "rewrite_bullet": (0.15, 3.0),
    "tailor_section": (0.5, 2.0),
    "summary": (0.15, 3.0),
}


@dataclass
class FilterConfig:
    """Settings of the quality filters.

    Attributes:
        min_target_words: targets with fewer words are trivial ("Done.", "Improved it.").
        length_ratios: task -> (min, max) of target words / source words; a task not
            listed is not checked.
        languages: accepted ISO 639-1 codes; empty turns the language check off.
        min_language_confidence: a text is rejected only when the identifier names
            another language with at least this probability; unsure calls keep the row.
            English skill lists ("infection control BLS IV lines") score up to 0.5 for
            Latin or French; CV lines in other languages score 0.7 and up.
        min_language_letters: texts with fewer letters (after dropping numbers, symbols
            and placeholders) are not checked: too little to judge.
        grounded: remove targets with claims the source and job description lack.
        harmful: remove targets with harmful content, and inputs with a prompt injection.
    """

    min_target_words: int = 3
    length_ratios: dict[str, tuple[float, float]] = field(default_factory=lambda: dict(LENGTH_RATIOS))
    languages: tuple[str, ...] = ("en",)
    min_language_confidence: float = 0.6
    min_language_letters: int = 15
    grounded: bool = True
    harmful: bool = True


def trivial_target(record: Any, cfg: FilterConfig) -> str | None:
    """An empty, placeholder-only or too short target teaches nothing."""
    words = _WORD.findall(record.target)
    if _canonical(record.target) in PLACEHOLDERS:
        return f"placeholder target {record.target.strip()!r}"
    if len(words) < cfg.min_target_words:
        return f"trivial target {record.target.strip()!r}: {len(words)} words, fewer than {cfg.min_target_words}"
    return None


def identical_target(record: Any, cfg: FilterConfig) -> str | None:
    """A target equal to its source (ignoring case, spacing, punctuation) teaches copying."""
    if _canonical(record.target) == _canonical(record.source_text):
        return "target repeats the source"
    return None


def length_ratio(record: Any, cfg: FilterConfig) -> str | None:
    """Target/source length outside the task's range: truncated or padded with content."""
    bounds = cfg.length_ratios.get(record.task)
    if bounds is None:
        return None
    source_words = len(_WORD.findall(record.source_text))
    if not source_words:
        return "source has no words"
    ratio = len(_WORD.findall(record.target)) / source_words
    low, high = bounds
    if not low <= ratio <= high:
        return f"target/source length ratio {ratio:.2f} outside {low:g}-{high:g} for {record.task}"
    return None


def language(record: Any, cfg: FilterConfig) -> str | None:
    """Target or source confidently in a language outside cfg.languages."""
    if not cfg.languages:
        return None
    for name in ("target", "source_text"):
        text = getattr(record, name)
        if _plainly_english(text, cfg):
            continue
        text = " ".join(_UNREADABLE.sub(" ", text).split())
        if len(_LETTER.findall(text)) < cfg.min_language_letters:
            continue
        lang, confidence = _identifier().classify(text)
        if lang not in cfg.languages and confidence >= cfg.min_language_confidence:
            return f"{name} is {lang} (confidence {confidence:.2f}), not {'/'.join(cfg.languages)}"
    return None


def ungrounded_target(record: Any, cfg: FilterConfig) -> str | None:
    """A target stating a fact (number, employer, degree) that neither input supports."""
    if not cfg.grounded:
        return None
    from cvml.safety.fabrication import check_fabrication

    claims = check_fabrication(record.target, record.source_text, record.job_description).claims
    if claims:
        listed = ", ".join(f"{c.text!r} ({c.kind})" for c in claims[:3])
        return f"target states what the inputs do not support: {listed}"
    return None


def harmful_content(record: Any, cfg: FilterConfig) -> str | None:
    """A target adding a protected attribute or abusive language; inputs with a prompt injection."""
    if not cfg.harmful:
        return None
    from cvml.safety.harmful import check_harmful

    found = check_harmful(record.target, record.source_text, record.job_description).to_dict()
    for name, what in (("protected_attributes", "a protected attribute"), ("abusive", "abusive language")):
        if found[name]["flagged"]:
            return f"target adds {what} the source lacks: {', '.join(found[name].get('categories') or [name])}"
    if found["injection"]["flagged"]:
        return f"prompt injection in the {' and '.join(found['injection'].get('where') or ['inputs'])}"
    return None


FILTERS: tuple[Callable[[Any, FilterConfig], str | None], ...] = (
    trivial_target, identical_target, length_ratio, language, ungrounded_target, harmful_content,
)


def apply_filters(record: Any, cfg: FilterConfig) -> str | None:
    """Run the filters in order (cheap ones first); the first reason, or None to keep."""
    for check in FILTERS:
        if reason := check(record, cfg):
            return reason
    return None


def _plainly_english(text: str, cfg: FilterConfig) -> bool:
    return "en" in cfg.languages and len(_ENGLISH.intersection(text.lower().split())) >= 2


def _canonical(text: str) -> str:
    return " ".join(_WORD.findall(text.lower()))


@lru_cache(maxsize=1)
def _identifier():
    """py3langid's model with normalised probabilities, loaded once (about 0.5 s)."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
