"""What a grounded rewrite may state: the facts its inputs (the CV text and the job
description) hold, read into the sets the decoding constraint checks against.

- numbers: every digit run of the inputs ("25", "2019", "1,200", "3.5"), with its
  thousands separators and without ("1,200" and "1200"), and the value of each number
  word ("five" -> "5"). A number the output writes must be one of them, written out.
  A job description's durations ("3+ years of experience") are requirements, not facts
  about the candidate, so their numbers do not count (as in the fabrication check).
- units: a number written with a unit ("15%", "$51", "6 years", "5k") must be a quantity
  the inputs support — the fabrication check decides (`quantity_ok`), so "15 years of
  experience" does not allow "15%". After a currency sign only the numbers that can be
  money may start.
- number words: "twelve", "hundred", "dozen" may be written only when the inputs hold
  the word or its value; "one" and "a" are everyday words and stay free.
- strict mode adds entities: a capitalised word inside a sentence (a name: employer,
  school, degree, place) must be a word of the inputs; the degree words ("bachelor",
  "mba", "diploma", ...) may be written only when the inputs hold them. A sentence's
  first word stays free, so verbs can open a bullet.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

MODES = ("off", "numbers", "strict")
QUANTITY_KINDS = frozenset({"number", "percent", "money", "year", "duration"})

_UNITS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
          "seventeen eighteen nineteen").split()
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()
NUMBER_WORDS: dict[str, int] = {
    **{w: i for i, w in enumerate(_UNITS)},
    **{w: 10 * (i + 2) for i, w in enumerate(_TENS)},
    "hundred": 100, "thousand": 1000, "million": 10**6, "billion": 10**9, "dozen": 12, "lakh": 10**5,
    "lakhs": 10**5, "crore": 10**7, "crores": 10**7,
}
# Too common as words to lock ("one of the", "zero downtime"); a quantity needs a unit anyway.
_FREE_NUMBER_WORDS = frozenset({"zero", "one"})
DEGREE_WORDS = frozenset("""bachelor bachelors masters doctorate doctoral phd mba msc bsc btech mtech beng meng bcom
mcom bba mca bca llb llm mbbs diploma degree degrees postgraduate undergraduate""".split())

_MONEY_SCALES = ("", "k", "M", "bn", " thousand", " million", " billion", " lakh", " crore")
_DIGIT_RUN = re.compile(r"\d+(?:[.,]\d+)*")
_LETTER_RUN = re.compile(r"[^\W\d_]+")


@dataclass(frozen=True, eq=False)
class Facts:
    """The sets one request's constraint checks (all words lower case).

    `numbers` None: digits are free (mode off). `cap_words` None: capitalised words are
    free (modes off and numbers)."""

    mode: str
    numbers: frozenset[str] | None
    number_prefixes: dict[str, int]  # prefix -> fewest characters that complete an allowed number
    money_prefixes: dict[str, int]  # the same for the numbers that may follow a currency sign
    blocked_words: frozenset[str]
    tracked_prefixes: dict[str, int]  # prefixes of the words a decoder follows: blocked and number words
    cap_words: frozenset[str] | None
    cap_prefixes: dict[str, int]
    support: object = None  # the inputs' `ClaimSupport`
    _verdicts: dict = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.mode != "off"

    def quantity_ok(self, text: str) -> bool:
        """Whether a quantity as written ("15%", "$51", "6 years") is one the inputs support."""
        if self.support is None:
            return True
        if text not in self._verdicts:
            unsupported = self.support.check(text).claims
            self._verdicts[text] = not any(c.kind in QUANTITY_KINDS for c in unsupported)
        return self._verdicts[text]


def grounding_facts(source: str, job_description: str | None = None, mode: str = "numbers") -> Facts:
    """The facts `source` and `job_description` hold, for a constraint in `mode`.

    Raises:
        ValueError: `mode` is not one of MODES.
    """
    if mode not in MODES:
        raise ValueError(f"grounding mode must be one of {', '.join(MODES)}, got {mode!r}")
    text = f"{source}\n{job_description or ''}"
    words = {w.lower() for w in _LETTER_RUN.findall(text)}
    if mode == "off":
        return Facts(mode, None, {}, {}, frozenset(), {}, None, {})
    from cvml.safety.fabrication import ClaimSupport
    numbers = set()
    for run in _DIGIT_RUN.findall(source) + _job_numbers(job_description or ""):
        numbers |= _written_forms(run)
    for word in words & NUMBER_WORDS.keys():
        numbers.add(str(NUMBER_WORDS[word]))
    allowed_words = (words & NUMBER_WORDS.keys()) | _FREE_NUMBER_WORDS
    allowed_words |= {w for w, value in NUMBER_WORDS.items() if str(value) in numbers}
    blocked = set(NUMBER_WORDS) - allowed_words
    cap_words = None
    if mode == "strict":
        blocked |= DEGREE_WORDS - words
        cap_words = frozenset(words | {"i"})
    facts = Facts(
        mode=mode,
        numbers=frozenset(numbers),
        number_prefixes=_prefixes(numbers),
        money_prefixes={},
        blocked_words=frozenset(blocked),
        tracked_prefixes=_prefixes(blocked | set(NUMBER_WORDS)),
        cap_words=cap_words,
        cap_prefixes=_prefixes(cap_words or ()),
        support=ClaimSupport(source, job_description),
    )
    money = [n for n in numbers if any(facts.quantity_ok(f"${n}{scale}") for scale in _MONEY_SCALES)]
    facts.money_prefixes.update(_prefixes(money))
    return facts


def _job_numbers(job_description: str) -> list[str]:
    """The digit runs of a job description outside its durations."""
    from cvml.safety.fabrication import extract_claims

    durations = [c.span for c in extract_claims(job_description) if c.kind == "duration"]
    return [m.group() for m in _DIGIT_RUN.finditer(job_description)
            if not any(start <= m.start() < end for start, end in durations)]


def _written_forms(run: str) -> set[str]:
    """A number as the input wrote it, and with / without thousands separators."""
    forms = {run}
    if re.fullmatch(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?", run):
        forms.add(run.replace(",", ""))
    elif re.fullmatch(r"\d{4,}(?:\.\d+)?", run) and not re.fullmatch(r"19[5-9]\d|20[0-3]\d", run):  # not years
        whole, dot, frac = run.partition(".")
        forms.add(f"{int(whole):,}" + dot + frac)
    return forms


def _prefixes(strings) -> dict[str, int]:
    """Every prefix of `strings`, with the fewest characters that finish one of them."""
    rest: dict[str, int] = {}
    for s in strings:
        for i in range(1, len(s) + 1):
            rest[s[:i]] = min(rest.get(s[:i], len(s)), len(s) - i)
    return rest
