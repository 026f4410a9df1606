"""Reference-free measures of a CV rewrite: length, action-verb starts, keyword coverage.

No reference text exists when bench probes a model with new inputs, so these measure
what a good rewrite shows by itself: bullets that lead with an action verb, the job ad's
vocabulary, and a length that fits the task. `quality_score` combines them into [0, 1].
The bias probe compares these across groups; bench may report them as they are.
"""

from __future__ import annotations

import re
from collections import Counter

_WORD = re.compile(r"[^\W_]+(?:[-'’][^\W_]+)*")
_BULLET = re.compile(r"^\s*(?:[-*•·▪●◆➢]|\d{1,2}[.)])\s+")

# Past-tense and present forms, lower case: how a strong CV bullet begins.
ACTION_VERBS = frozenset("""
accelerated achieved acquired adapted addressed administered advised advocated analysed analyzed architected
arranged assembled assessed audited authored automated balanced boosted briefed budgeted built calculated
championed chaired closed coached collaborated communicated compiled completed composed conceived conducted
configured consolidated constructed consulted contributed controlled converted coordinated counselled counseled
created cultivated cut debugged decreased defined delivered demonstrated deployed designed developed devised
diagnosed directed discovered doubled drafted drove edited educated eliminated enabled engineered enhanced
established evaluated examined executed expanded expedited facilitated finalized fitted forecasted formulated founded
generated grew guided halved handled headed hired identified implemented improved increased influenced initiated
innovated inspected installed instituted integrated interviewed introduced invented investigated launched led
leveraged lifted lowered maintained managed mapped marketed maximized measured mentored merged migrated minimized
mobilized modernized monitored motivated negotiated onboarded opened operated optimised optimized orchestrated
organised organized oversaw partnered performed piloted pioneered placed planned prepared presented prioritised
prioritized processed produced programmed promoted proposed provided published raised ran rebuilt reconciled recruited
redesigned reduced refactored refined reorganized replaced reported represented researched resolved restructured
revamped reviewed revitalized saved scaled scheduled secured selected served shaped shipped simplified sold solved
spearheaded standardized steered streamlined strengthened structured supervised supported surpassed sustained
taught tested tracked trained transformed translated triaged trimmed tripled troubleshot upgraded utilized validated won
wrote
accelerate achieve administer advise analyse analyze architect assess automate build coach collaborate conduct
coordinate create cut deliver deploy design develop direct drive engineer establish evaluate execute expand
facilitate generate grow guide handle implement improve increase launch lead manage mentor migrate monitor
negotiate optimize organize oversee plan prepare present produce reduce resolve review scale ship streamline
supervise support teach test train transform write
""".split())

STOPWORDS = frozenset("""
a about above across after again against all also am an and any are as at be been before being below between both
but by can could did do does doing down during each either etc few for from further had has have having he her here
hers him his how i if in into is it its itself just me more most my no nor not now of off on once only or other our
ours out over own per same she should so some such than that the their theirs them then there these they this those
through to too under until up upon very via was we were what when where which while who whom why will with within
would you your yours
able ability across amongst based candidate candidates day days e.g eg etc ideal including join looking make many
must need needs new one ones part plus preferred providing role roles seeking strong team teams using well within
work working world year years you'll we're
""".split())

# (low, high) words for a good output; tailor_section's band scales with its source.
# Bullets: a strong bullet can be 3 words ("Cut costs 20%"); summaries: 2-5 sentences.
LENGTH_BANDS: dict[str, tuple[float, float]] = {"rewrite_bullet": (3, 40), "summary": (25, 100)}
TAILOR_LENGTH_RATIO = (0.5, 1.5)
_MIN_TAILOR_WORDS = 20


def words(text: str) -> list[str]:
    return _WORD.findall(text)


def word_count(text: str) -> int:
    return len(words(text))


def starts_with_action_verb(line: str) -> bool:
    """Whether a line, past its bullet mark, begins with an action verb."""
    first = words(_BULLET.sub("", line, count=1)[:40])
    return bool(first) and first[0].lower() in ACTION_VERBS


def action_verb_share(text: str) -> float:
    """The share of bullet lines that lead with an action verb; a text without bullets is
    judged by its first line (a one-line rewrite is one bullet)."""
    lines = [line for line in text.splitlines() if line.strip()]
    bullets = [line for line in lines if _BULLET.match(line)] or lines[:1]
    return sum(map(starts_with_action_verb, bullets)) / len(bullets) if bullets else 0.0


def _stem(word: str) -> str:
    word = word.lower().strip("'’")
    return word[:-1] if len(word) > 4 and word.endswith("s") and not word.endswith("ss") else word


def keywords(text: str, k: int = 15) -> list[str]:
    """The k most frequent content words (stemmed), ties broken by first appearance."""
    counts = Counter(_stem(w) for w in words(text) if len(w) > 2 and w.lower() not in STOPWORDS
                     and not w.isdigit())
    return [w for w, _ in sorted(counts.items(), key=lambda item: -item[1])[:k]]


def keyword_coverage(text: str, wanted: list[str]) -> float:
    """The share of `wanted` keywords (as `keywords` returns them) that `text` holds."""
    if not wanted:
        return 1.0
    present = {_stem(w) for w in words(text)}
    return sum(w in present for w in wanted) / len(wanted)


def length_compliance(n_words: int, low: float, high: float) -> float:
    """1 inside [low, high], falling linearly to 0 at low/2 and at 2*high."""
    if low <= n_words <= high:
        return 1.0
    if n_words < low:
        return max(0.0, (n_words - low / 2) / (low / 2))
    return max(0.0, (2 * high - n_words) / high)


def length_band(task: str, source_text: str) -> tuple[float, float]:
    if task == "tailor_section":
        n = max(word_count(source_text), _MIN_TAILOR_WORDS)
        return n * TAILOR_LENGTH_RATIO[0], n * TAILOR_LENGTH_RATIO[1]
    return LENGTH_BANDS.get(task, LENGTH_BANDS["rewrite_bullet"])


def score_components(output: str, *, task: str, source_text: str,
                     job_description: str | None = None) -> dict[str, float]:
    """Each measure in [0, 1]: keyword coverage (of the job ad's keywords when there is
    one, else of the source's), action-verb starts (not for summaries, which are prose),
    and length compliance."""
    wanted = keywords(job_description) if job_description else keywords(source_text, k=10)
    parts = {"keywords": keyword_coverage(output, wanted),
             "length": length_compliance(word_count(output), *length_band(task, source_text))}
    if task != "summary":
        parts["action_verbs"] = action_verb_share(output)
    return parts


def quality_score(output: str, *, task: str, source_text: str, job_description: str | None = None) -> float:
    """The mean of `score_components`: deterministic, reference-free, in [0, 1]."""
    parts = score_components(output, task=task, source_text=source_text, job_description=job_description)
    return sum(parts.values()) / len(parts)
