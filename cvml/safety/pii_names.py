"""Person names, found by where they stand and by what they are.

A CV puts a name in few places: its header (the first line, "Jane Doe — Data Analyst", or
the line after a "Curriculum Vitae" title), a "Name:" field, after a title ("Dr. Jane Doe")
or before post-nominals ("Jane Doe, PhD"), on the line above a postal address, under a
closing ("Kind regards,"). There a run of capitalised words is a name unless a word of it
is CV vocabulary (a section, a job title, an employer's suffix), which `_NOT_NAME` lists.

Elsewhere a place alone is too weak a cue, so a list of first names and surnames
(`Lexicon`: the US census and Faker's person-name lists, data/person_names/NOTICE) must
back it: a first name and a surname on a line of their own next to contact details, or
after "I worked with", "reporting to", "I am" ("my name is" needs no list); one known
name alone as the first word of a text ("Halvorson  161 Main St") or after "Signature:",
unless it is also an English word ("Grace", "Swift"). Every name found, and every name
the caller supplies, is then also found wherever else it occurs: footers repeat it.

Each cue is looked for by a regex that starts with a literal or one character class, or
by a substring test, so that `re` skips to candidate positions: this runs on every text
that curation or the request log sees.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from pathlib import Path

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
# Phrases after which a name often stands in running text. Each capitalised word after a
# space is checked for one of their last words (`str.endswith`, fast), and only then are
# the words before it looked up. After a strong cue ("my name is") any run of two
# capitalised words is a name; after the others the list must back it.
_CAPITAL_AFTER_SPACE = re.compile(rf" (?=[{_UPPER}])")
_STRONG_CUES = ("my name is", "name is", "myself")
_WEAK_CUES = (
    "i am", "i'm", "i’m", "this is", "contact", "dear",
    *(f"{verb} {adverb}{prep}" for verb in (
        "work", "works", "worked", "working", "collaborate", "collaborated", "collaborating", "partnered",
        "partnering", "teamed up", "authored", "co-authored", "coauthored", "liaised", "liaising")
      for adverb in ("", "closely ") for prep in ("with", "alongside")),
    *(f"{verb} {adverb}to" for verb in ("report", "reports", "reported", "reporting") for adverb in ("", "directly ")),
    *(f"{verb} by" for verb in ("managed", "supervised", "mentored", "guided", "led", "coached", "trained",
                                "referred", "recommended", "prepared", "hired", "interviewed", "nominated",
                                "endorsed", "signed")),
    *(f"under {the}{what} of" for the in ("", "the ") for what in ("guidance", "supervision", "mentorship",
                                                                  "leadership")),
)
_CUE_ENDS = tuple({cue.rsplit(" ", 1)[-1] + " " for cue in (*_STRONG_CUES, *_WEAK_CUES)})
_STRONG_TAILS, _WEAK_TAILS = (tuple(f" {cue} " for cue in cues) for cues in (_STRONG_CUES, _WEAK_CUES))
_CUE_CHARS = max(map(len, _WEAK_TAILS + _STRONG_TAILS))
# Where a segment (a line, a piece between bullets, pipes or wide gaps) starts with a capital.
_SEGMENT_START = re.compile(rf"(?:[\n|•·▪●◆➢\t]|  )[ \t\u00a0]*(?=[{_UPPER}])")
_BREAK_AT = re.compile(_BREAK)
# Contact details next to a lone name: an email, an international or area-coded phone, a
# labelled phone, a "Name:" label (forms).
_CONTACT = re.compile(r"@[\w-]+\.|\+\d|\(\d{2,4}\)[ \u00a0]?\d|(?i:\bname)[ \t\u00a0]*:"
                      r"|(?i:\b(?:phone|mobile|cell|tel|fax|e-?mail)\b)[ \t\u00a0]*[:#.]?[ \t\u00a0]*[+(\d]")
_NEAR = 80
# Words after which a text's first word is a place or an employer ("Kansas City, MO",
# "Westfield Manufacturing"), not a name.
_PLACE_OR_ORG = frozenset("""
city county state district town street road avenue beach springs park valley heights island bay falls hills lake
village university college school institute academy company co ltd limited inc llc llp plc gmbh corp corporation
pvt private group bank labs lab health healthcare foods studios studio telecom energy hospital insurance
manufacturing travel housing freight solutions consultancy partners holdings industries enterprises agency
foundation trust council department ministry government office center centre clinic systems technologies
software services logistics retail motors analytics media capital consulting associates international global
""".split())
# Never a name on its own, though the census knows them as surnames.
_NOT_ALONE = frozenset("""
java perl python ruby scala swift rust kotlin golang php sql mysql postgres oracle sap salesforce siebel jenkins
docker kubernetes ansible terraform linux unix android ios azure aws hadoop spark kafka hive tableau cisco juniper
dell apple google amazon intel adobe autocad matlab excel word sales english hindi spanish french german
""".split())

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
magna summa cum laude
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


class Lexicon:
    """First names and surnames, casefolded, and which of them are also English words
    ("grace", "swift"). What it says of a word is kept: the same words recur."""

    _FIRST, _SURNAME, _PLAIN = 1, 2, 4
    _KEEP = 1 << 16

    def __init__(self, first: Iterable[str], surnames: Iterable[str], words: Iterable[str]):
        self.first, self.surnames, self.words = frozenset(first), frozenset(surnames), frozenset(words)
        self._kinds: dict[str, int] = {}

    def is_first(self, word: str) -> bool:
        return bool(self._kind(word) & self._FIRST)

    def is_surname(self, word: str) -> bool:
        """A known surname; a double-barrelled one ("Smith-Jones") of known names."""
        return bool(self._kind(word) & self._SURNAME)

    def is_plain(self, word: str) -> bool:
        """A known name that is no English word, CV vocabulary or tool ("Halvorson", not "Swift")."""
        return bool(self._kind(word) & self._PLAIN)

    def backs(self, words: list[str]) -> bool:
        """Whether two or more words read as a name: a first name, then a known surname, and
        no CV vocabulary ("Anna Kowalczyk", "Mary Brown", not "Nova Scotia" or "Ryan Motors")."""
        return (len(words) > 1 and self.is_first(words[0]) and self.is_surname(words[-1])
                and not any(_is_vocabulary(w) for w in words))

    def _kind(self, word: str) -> int:
        kind = self._kinds.get(word)
        if kind is None:
            if len(self._kinds) >= self._KEEP:
                self._kinds.clear()
            kind = self._kinds[word] = self._classify(word)
        return kind

    def _classify(self, word: str) -> int:
        parts = word.rstrip(".,").replace("’", "'").casefold().split("-")
        kind = self._FIRST * all(p in self.first for p in parts)
        kind |= self._SURNAME * all(p in self.surnames or (len(parts) > 1 and p in self.first) for p in parts)
        if kind and not _is_vocabulary(word) and not any(p in self.words or p in _NOT_ALONE for p in parts):
            kind |= self._PLAIN
        return kind


@functools.cache
def lexicon() -> Lexicon:
    """The names shipped in cvml/safety/data/person_names (see its NOTICE), read once."""
    folder = Path(__file__).resolve().parent / "data" / "person_names"
    first, surnames, words = ((folder / f"{name}.txt").read_text(encoding="utf-8").split()
                              for name in ("first_names", "surnames", "common_words"))
    return Lexicon(first, surnames, words)


class NameFinder:
    """Finds names in a text; built once per redactor (it indexes the supplied names)."""

    def __init__(self, names: Iterable[str] = ()):
        self._supplied = _NameList(names)
        self._lexicon = lexicon()

    def find(self, text: str) -> list[Span]:
        """Spans of the names in `text`; they may overlap (the redactor resolves that)."""
        low = text.lower()
        lex = self._lexicon
        spans = [span for span in (_header_name(text, lex),) if span]
        if ":" in text:
            spans += _after_labels(text, lex)
        spans += _after_honorifics(text)
        if "\n" in text and any(word in low for word in _CLOSING_WORDS):
            spans += _after(_CLOSING, text, 2)
        if any(word in low for word in _DOC_TITLE_WORDS):
            spans += _after(_TITLE_CUE, text, 2, whole_segment=True) + _after(_RESUME_OF, text, 2)
        spans += _after_phrases(text, low, lex)
        spans += _before_post_nominals(text) + _above_addresses(text) + _lone_names(text, lex)
        spans += self._supplied.find(text)
        return spans + find_again(text, {text[s:e] for s, e in spans}, seen=1) if spans else spans


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


def _header_name(text: str, lex: Lexicon) -> Span | None:
    """The name at the top of a CV: its first segment, or the first after a document title,
    a date or stray symbols. What follows it must be a separator, unless the list knows the
    name ("Ivan Keeling 87 Some Street"); one word is a name if it is a plain known one."""
    for n, segment in enumerate(_SEGMENT.finditer(text, 0, _HEAD_CHARS)):
        if n == _HEAD_SEGMENTS:
            return None
        start, end = _LEADING_JUNK.match(text, segment.start(), segment.end()).end(), segment.end()
        if text.startswith("<NAME_", start):  # already redacted
            return None
        span = _name_at(text, start, end, min_words=2)
        preamble = _is_preamble(text, start, end)
        if span and (lex.backs(text[span[0]:span[1]].split())
                     or not preamble and _AFTER_HEADER.match(text, span[1], end)):
            return span
        if preamble:
            continue
        return _header_word(text, start, end, lex) if n == 0 else None
    return None


def _header_word(text: str, start: int, end: int, lex: Lexicon) -> Span | None:
    """A plain known name as the first word of a text ("Halvorson  161 Main St"), unless a
    place word follows it ("Kansas City")."""
    run = _RUN_AT.match(text, start, end)
    words = run.group().split() if run else []
    if not words or not lex.is_plain(words[0]) or (len(words) > 1 and words[1].lower() in _PLACE_OR_ORG):
        return None
    return start, start + len(words[0])


def _is_preamble(text: str, start: int, end: int) -> bool:
    """Whether a segment is one a header name may follow: a short document title ("Sample
    Resume"), a date, stray symbols."""
    if end - start > _TITLE_CHARS:
        return False
    return not _LETTER.search(text, start, end) or bool(_DOC_TITLE.search(text, start, end))


def _after_labels(text: str, lex: Lexicon) -> list[Span]:
    """Names after "Name:", "Reference:" and the like (two words at least, "Reference: Will
    be furnished" is no name, or one plain known name: "Signature: Halvorson")."""
    spans = []
    for colon in _AFTER_COLON.finditer(text):
        if _FIELD_LABEL.search(text, max(0, colon.start() - 24), colon.start()):
            spans += _after_cue(text, colon.end(), 2) or _plain_word_at(text, colon.end(), lex)
    return spans


def _plain_word_at(text: str, start: int, lex: Lexicon, known: bool = False) -> list[Span]:
    """One word at `start`, not followed by another capitalised word or a colon, that is a
    plain known name (with `known`, any known name that is no CV vocabulary: "Grace")."""
    run = _RUN_AT.match(text, start)
    if not run or " " in run.group() or "\u00a0" in run.group() or text[run.end():run.end() + 1] == ":":
        return []
    word = run.group()
    if known:
        ok = not _is_vocabulary(word) and (lex.is_first(word) or lex.is_surname(word))
    else:
        ok = lex.is_plain(word)
    return [run.span()] if ok else []


def _after_phrases(text: str, low: str, lex: Lexicon) -> list[Span]:
    """Names in running text after "my name is", "I worked with", "reporting to"...: after
    a strong cue any run of two words or more, or one plain known name; after the others a
    run the list backs. `low` is `text` lower-cased."""
    spans = []
    for space in _CAPITAL_AFTER_SPACE.finditer(text):
        start = space.end()
        if not low.endswith(_CUE_ENDS, 0, start):
            continue
        strong = _cue_before(low, start)
        if strong is None:
            continue
        span = _name_at(text, start, len(text), min_words=2)
        if span and not strong:
            span = _backed(text, span, lex)
        if span:
            spans.append(span)
        elif strong:
            spans += _plain_word_at(text, start, lex, known=True)
    return spans


def _backed(text: str, span: Span | None, lex: Lexicon) -> Span | None:
    """The longest start of a run of words that the list backs ("Anna Kowalczyk" of "Anna
    Kowalczyk Acme"), if any."""
    if not span:
        return None
    words = list(_WORD.finditer(text, span[0], span[1]))
    for n in range(len(words), 1, -1):
        if lex.backs([w.group() for w in words[:n]]):
            return span[0], words[n - 1].end()
    return None


def _cue_before(low: str, start: int) -> bool | None:
    """Whether the words just before `start` are a strong cue (True), a weak one (False) or
    none (None)."""
    tail = " " + low[max(0, start - _CUE_CHARS):start].replace("\n", " ")
    return True if tail.endswith(_STRONG_TAILS) else False if tail.endswith(_WEAK_TAILS) else None


def _lone_names(text: str, lex: Lexicon) -> list[Span]:
    """Names on a segment of their own (a line, a piece between pipes) that the list backs,
    with contact details near: "Jane Doe" above her email."""
    spans = []
    for start in (0, *(m.end() for m in _SEGMENT_START.finditer(text))):
        run = _RUN_AT.match(text, start)
        if not run or not _BREAK_AT.match(text, run.end()):
            continue
        words = run.group().split()
        if not 2 <= len(words) <= 4 or not lex.backs(words):
            continue
        end = run.end()
        if _CONTACT.search(text, max(0, start - _NEAR), min(len(text), end + _NEAR)):
            spans.append((start, end))
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


def find_again(text: str, names: Iterable[str], seen: int = 0) -> list[Span]:
    """Every occurrence, in any case but all lower, of the names of two words or more, and
    of one-word names that are plain known names ("Halvorson"): a name found once (in a
    header, or in a record's other text) is a name everywhere. With `seen`, names whose last
    word `text` holds `seen` times or fewer as written, capitalised or in capitals (the
    names just found in it, once) are not looked for."""
    alternatives, low = set(), None
    for name in names:
        words = name.split()
        if not words or (len(words) == 1 and not lexicon().is_plain(words[0])):
            continue
        last = words[-1]
        if seen:
            if sum(text.count(form) for form in {last, last.capitalize(), last.upper()}) <= seen:
                continue
        else:
            low = text.lower() if low is None else low
            if last.lower() not in low:
                continue
        alternatives.add(r"\s+".join(re.escape(w.lower()) for w in words))
    if not alternatives:
        return []
    pattern = re.compile(rf"(?<!\w)(?:{'|'.join(sorted(alternatives))})(?!\w)", re.IGNORECASE)
    return [m.span() for m in pattern.finditer(text) if not m.group().islower()]
