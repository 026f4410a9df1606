"""Person names, found by where they stand rather than by what they are.

No list covers the world's names, but a CV puts a name in few places: its header (the
first line, "Jane Doe — Data Analyst", or the line after a "Curriculum Vitae" title), a
"Name:" field, after a title ("Dr. Jane Doe") or before post-nominals ("Jane Doe, PhD"),
on the line above a postal address, under a closing ("Kind regards,"). There a run of
capitalised words is a name unless a word of it is CV vocabulary (a section, a job title,
an employer's suffix), which `_NOT_NAME` lists. Every name found that way, and every name
the caller supplies, is then also found wherever else it occurs: footers repeat it.

Each cue is looked for by a regex that starts with a literal or one character class, or
by a substring test, so that `re` skips to candidate positions: this runs on every text
that curation or the request log sees.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from cvml.safety.pii_patterns import find_addresses

Span = tuple[int, int]

_UPPER, _LOWER = "A-ZÀ-ÖØ-Þ", "a-zß-öø-ÿ"
_TITLE_WORD = rf"(?:Mc|Mac|Van|Von|De|Di|Du|La|Le|O['’]|D['’])?[{_UPPER}][{_LOWER}]+(?:-[{_UPPER}{_LOWER}][{_LOWER}]+)?"
_INITIAL = r"[A-Z]\.|[A-Z](?=[ \u00a0][A-Z][a-z])"
_CAPS_WORD = r"[A-Z][A-Z'’-]+"
# Up to five words of one case style: "Jane A. Doe", "JANE DOE" (a mix such as "Reduced API" is no name).
_RUN = (rf"(?:{_TITLE_WORD}|{_INITIAL})(?:[ \u00a0](?:{_TITLE_WORD}|{_INITIAL})){{0,4}}"
        rf"|{_CAPS_WORD}(?:[ \u00a0]{_CAPS_WORD}){{1,4}}(?![a-z])")
_RUN_AT = re.compile(_RUN)
_WORD = re.compile(r"\S+")
_LETTER = re.compile(rf"[{_UPPER}{_LOWER}]")

# Lines, or runs split by bullets, pipes or wide gaps as in text extracted from PDFs.
_BREAK = r"(?:[ \t\u00a0]*(?:\n|$|[|•·▪●◆➢])|[ \t\u00a0]{2,})"
_SEGMENT = re.compile(r"[^\s|•·▪●◆➢]+(?:[ \t\u00a0][^\s|•·▪●◆➢]+)*")
_SEGMENT_END = re.compile(rf"{_BREAK}|,")
_HEAD_CHARS, _HEAD_SEGMENTS, _TITLE_CHARS = 400, 4, 60
# Bullets, quotes and escaped bytes ("\xe2\x80\xa2") that some PDF-to-text tools leave.
_LEADING_JUNK = re.compile(r"(?:\\x[0-9a-fA-F]{2}|[^\w<])*")
# What may follow a header name: nothing, or a separator before a title or degrees (not a
# colon: "Passport No: K1234567" is a field).
_AFTER_HEADER = re.compile(r"\s*(?:$|[,.–—|(/]|-\s)")
_DOC_TITLE = re.compile(r"(?i)\b(?:resume|résumé|cv|curriculum|vitae|vita|biodata|template|sample|example|updated)\b")
_DOC_TITLE_WORDS = ("resume", "résumé", "cv", "curriculum", "vita", "biodata")

_HONORIFIC = re.compile(r"(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Professor|Sir|Capt|Captain|Rev)\.?[ \u00a0]+")
_AFTER_COLON = re.compile(r":[ \t\u00a0]*(?:(?:Mr|Mrs|Ms|Dr)\.?[ \u00a0])?")
_FIELD_LABEL = re.compile(
    r"(?i:\b(?:(?:full|first|last|candidate'?s?)\s)?name|\breferee(?:\s\d)?|\breference|\bsignature)[ \t]*$"
)
_CLOSING = re.compile(r"(?i:regards|sincerely|faithfully|truly|best\swishes|thank\syou|thanks|respectfully)[,.!]?"
                      r"[ \t]*\n\s*")
_CLOSING_WORDS = ("regards", "sincerely", "faithfully", "truly", "wishes", "thank", "respectfully")
# A document title, then a segment that is only a name ("CURRICULUM VITAE   Jane Doe").
_TITLE_CUE = re.compile(r"(?i:\b(?:curriculum\svitae|resume|résumé|cv|vita|biodata)\b)[^\n]{0,30}?"
                        r"(?:\n|[ \t\u00a0]{2,})[ \t\n]*")
_RESUME_OF = re.compile(r"(?i:\b(?:resume|résumé|cv|curriculum\svitae)\sof)\s+")
_POST_NOMINAL = re.compile(r"(?:M\.\s?D\.|Ph\.\s?D\.?|PhD|Psy\.\s?D\.?|Ed\.\s?D\.?|M\.\s?A\.|M\.\s?S\.|M\.\s?Ed\.?|"
                           r"MBA|PMP|CPA|Esq\.?)(?!\w)")
_NAME_BEFORE_POST_NOMINAL = re.compile(rf"(?<![\w.])(?:{_RUN}),?[ \u00a0]$")
# A segment that is only a name, just above (or just before) a postal address.
_NAME_ABOVE = re.compile(rf"(?:^|(?<=[\n\t|•·▪●])|(?<=  ))(?:{_RUN})(?:{_BREAK}[ \t\u00a0\n]*|[ \u00a0])$")
_LOOK_BACK = 80

_NOT_NAME = frozenset("""
resume résumé cv curriculum vitae vita biodata template sample example page contact details information info
personal profile summary objective objectives experience experiences education skills skill projects project
certifications certification certificates certificate references reference referees referee languages language
interests hobbies achievements accomplishments awards honors honours publications qualifications qualification
training courses coursework activities volunteer volunteering declaration employment history work career
professional key core technical competencies competency expertise areas address phone email e-mail mobile tel
telephone website linkedin github portfolio overview highlights strengths responsibilities duties role roles
position current present previous nationality gender marital status date birth place signature name dossier
particulars additional other relevant selected recent academic internships seeking looking willing available
request upon updated last first full goals goal about passport visa number no id age sex religion
engineer engineers engineering developer developers development manager managers management analyst analysts
analysis analytics analytical consultant consultants consulting designer design director directors officer
assistant associate executive specialist coordinator administrator administration architect architecture lead
leader senior junior sr jr intern internship trainee student teacher lecturer tutor professor nurse accountant
accounting scientist science sciences technician programmer programming tester testing test head chief president
vice principal supervisor representative agent clerk editor writer author marketing sales software hardware data
business product products program programme operations operation support customer customers service services
technical technology technologies systems system network networks networking web application applications digital
financial finance human resources hr it legal medical research quality assurance graduate apprentice freelance
freelancer full-stack stack frontend front-end backend back-end mobile cloud devops security database databases
admin owner founder partner member team staff worker operator attorney lawyer solicitor paralegal advocate counsel
doctor physician surgeon pharmacist therapist recruiter recruitment buyer planner trader banker auditor economist
statistician researcher investigator inspector instructor trainer coach mentor electrician mechanic driver chef
cook cashier receptionist secretary advisor adviser general regional global national international deputy acting
interim certified registered licensed chartered qualified experienced expert master producer job seeker
applicant candidate association campus hall building room suite floor elementary primary secondary middle
social media content communications public relations creative warehouse logistics supply chain retail store
machine deep learning computer vision natural language processing computing artificial intelligence leadership
communication planning strategy writing speaking editing photography teaching nursing mathematics physics chemistry
biology economics statistics english french spanish german hindi arabic mandarin chinese japanese
bachelor bachelors masters degree diploma phd mba bsc msc ba ma btech mtech be me bcom mcom
university college school institute academy company ltd limited inc llc llp plc gmbh corp corporation pvt private
group bank labs lab health healthcare foods studios studio telecom energy hospital insurance manufacturing travel
housing freight solutions consultancy partners holdings industries enterprises agency foundation trust council
department ministry government office center centre clinic microsoft oracle google amazon infosys wipro accenture
excel access word powerpoint outlook visio sharepoint dynamics teams windows paint
street road avenue lane drive new san los saint st city town county state district india usa uk united kingdom
states america
january february march april may june july august september october november december jan feb mar apr jun jul
aug sep sept oct nov dec monday tuesday wednesday thursday friday saturday sunday
dear hiring thank thanks kind regards best sincerely yours faithfully truly the and of for to in at on by with
a an my our your we you he she they this that mr mrs ms miss dr prof
""".split())


class NameFinder:
    """Finds names in a text; built once per redactor (it indexes the supplied names)."""

    def __init__(self, names: Iterable[str] = ()):
        self._supplied = _NameList(names)

    def find(self, text: str) -> list[Span]:
        """Spans of the names in `text`; they may overlap (the redactor resolves that)."""
        low = text.lower()
        spans = [span for span in (_header_name(text),) if span]
        if ":" in text:
            spans += _after_labels(text)
        spans += _after_honorifics(text)
        if "\n" in text and any(word in low for word in _CLOSING_WORDS):
            spans += _after(_CLOSING, text, 2)
        if any(word in low for word in _DOC_TITLE_WORDS):
            spans += _after(_TITLE_CUE, text, 2, whole_segment=True) + _after(_RESUME_OF, text, 2)
        spans += _before_post_nominals(text) + _above_addresses(text) + self._supplied.find(text)
        return spans + find_again(text, {text[s:e] for s, e in spans})


class _NameList:
    """Names the caller knows, found as whole words in any case. A word-by-word lookup, not
    one big regex: an alternation of thousands of names is far too slow to run per text."""

    _WORD = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*")

    def __init__(self, names: Iterable[str]):
        self._by_first: dict[str, list[tuple[str, ...]]] = {}
        for name in names:
            words = tuple(w.casefold() for w in self._WORD.findall(name))
            if words and words not in self._by_first.get(words[0], []):
                self._by_first.setdefault(words[0], []).append(words)
        for variants in self._by_first.values():
            variants.sort(key=len, reverse=True)

    def find(self, text: str) -> list[Span]:
        if not self._by_first or self._by_first.keys().isdisjoint(map(str.casefold, self._WORD.findall(text))):
            return []
        words = list(self._WORD.finditer(text))
        spans = []
        for i, word in enumerate(words):
            for name in self._by_first.get(word.group().casefold(), ()):
                end = _phrase_end(text, words[i:i + len(name)], name)
                if end is not None:
                    spans.append((word.start(), end))
                    break
        return spans


def _phrase_end(text: str, words: list[re.Match], name: tuple[str, ...]) -> int | None:
    """Where `words` end if they spell `name`, with only whitespace between them."""
    if len(words) != len(name) or any(w.group().casefold() != n for w, n in zip(words, name)):
        return None
    if not all(text[a.end():b.start()].isspace() for a, b in zip(words, words[1:])):
        return None
    return words[-1].end()


def _header_name(text: str) -> Span | None:
    """The name at the top of a CV: its first segment, or the first after a document title,
    a date or stray symbols."""
    for n, segment in enumerate(_SEGMENT.finditer(text, 0, _HEAD_CHARS)):
        if n == _HEAD_SEGMENTS:
            return None
        start, end = _LEADING_JUNK.match(text, segment.start(), segment.end()).end(), segment.end()
        if text.startswith("<NAME_", start):  # already redacted
            return None
        if _is_preamble(text, start, end):
            continue
        span = _name_at(text, start, end, min_words=2)
        return span if span and _AFTER_HEADER.match(text, span[1], end) else None
    return None


def _is_preamble(text: str, start: int, end: int) -> bool:
    """Whether a segment is one a header name may follow: a short document title ("Sample
    Resume"), a date, stray symbols."""
    if end - start > _TITLE_CHARS:
        return False
    return not _LETTER.search(text, start, end) or bool(_DOC_TITLE.search(text, start, end))


def _after_labels(text: str) -> list[Span]:
    """Names after "Name:", "Reference:" and the like (two words at least: "Reference: Will
    be furnished" is no name)."""
    spans = []
    for colon in _AFTER_COLON.finditer(text):
        if _FIELD_LABEL.search(text, max(0, colon.start() - 24), colon.start()):
            spans += _after_cue(text, colon.end(), 2)
    return spans


def _after_honorifics(text: str) -> list[Span]:
    """Names after "Mr", "Dr.", "Prof". The regex has no leading word boundary, which would
    make it slow; the character before is checked here instead."""
    spans = []
    for m in _HONORIFIC.finditer(text):
        if m.start() == 0 or not text[m.start() - 1].isalpha():
            spans += _after_cue(text, m.end(), 1)
    return spans


def _after(cue: re.Pattern, text: str, min_words: int, whole_segment: bool = False) -> list[Span]:
    """Names that directly follow each match of a cue (a closing, a document title)."""
    spans = []
    for m in cue.finditer(text):
        found = _after_cue(text, m.end(), min_words)
        spans += [s for s in found if not whole_segment or _SEGMENT_END.match(text, s[1])]
    return spans


def _after_cue(text: str, start: int, min_words: int) -> list[Span]:
    span = _name_at(text, start, len(text), min_words)
    return [span] if span and text[span[1]:span[1] + 1] != ":" else []  # "Name: Address:" is a form


def _before_post_nominals(text: str) -> list[Span]:
    spans = []
    for m in _POST_NOMINAL.finditer(text):
        run = _NAME_BEFORE_POST_NOMINAL.search(text, max(0, m.start() - _LOOK_BACK), m.start())
        if run:
            spans += _trailing_name(text, run.start(), run.end())
    return spans


def _above_addresses(text: str) -> list[Span]:
    spans = []
    for start, _ in find_addresses(text):
        line = _NAME_ABOVE.search(text, max(0, start - _LOOK_BACK), start)
        if line:
            spans += _trailing_name(text, line.start(), line.end())
    return spans


def _name_at(text: str, start: int, end: int, min_words: int) -> Span | None:
    """The run of capitalised words at `start`, cut before its first CV-vocabulary word."""
    run = _RUN_AT.match(text, start, end)
    if not run or (min_words > 1 and not any(c.isspace() for c in run.group())):
        return None
    words = list(_WORD.finditer(run.group()))
    kept = next((i for i, word in enumerate(words) if _is_vocabulary(word.group())), len(words))
    if kept < min_words or all(len(word.group()) <= 2 for word in words[:kept]):
        return None
    return start, start + words[kept - 1].end()


def _trailing_name(text: str, start: int, end: int) -> list[Span]:
    """The words after the last CV-vocabulary word of the run at `start`, if two or more
    ("Senior Consultant Jane Doe" -> "Jane Doe"); `end` may include a separator after it."""
    run = _RUN_AT.match(text, start, end)
    words = list(_WORD.finditer(run.group())) if run else []
    first = next((i + 1 for i in range(len(words) - 1, -1, -1) if _is_vocabulary(words[i].group())), 0)
    name = words[first:]
    if len(name) < 2 or all(len(word.group()) <= 2 for word in name):
        return []
    return [(start + name[0].start(), start + name[-1].end())]


def _is_vocabulary(word: str) -> bool:
    word = word.rstrip(".")
    return len(word) > 1 and word.lower() in _NOT_NAME


def find_again(text: str, names: Iterable[str]) -> list[Span]:
    """Every occurrence, in any case but all lower, of the names of two words or more: a
    name found once (in a header, or in a record's other text) is a name everywhere."""
    words = {tuple(name.lower().split()) for name in names}
    alternatives = [r"\s+".join(map(re.escape, w)) for w in words if len(w) > 1]
    if not alternatives:
        return []
    pattern = re.compile(rf"(?<!\w)(?:{'|'.join(alternatives)})(?!\w)", re.IGNORECASE)
    return [m.span() for m in pattern.finditer(text) if not m.group().islower()]
