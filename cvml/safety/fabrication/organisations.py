"""Employers and schools: the runs of capitalised words that name an organisation, and the
index of an input's words that supports them.

An organisation is supported when the input names it in any written form: case,
punctuation, word order and legal suffixes do not matter ("ORACLE INDIA PVT LTD" =
"Oracle India", "University of Pune" = "Pune University"), nor an acronym for its long
form ("MIT" = "Massachusetts Institute of Technology").

They are found without NER. A run of capitalised words is one when it holds a school
word (University, College, Institute, ...) or a legal suffix (Inc, Ltd, Bank, Group, ...);
ends in an organisation word (Systems, Solutions, Health, ...) after a word that is not
generic ("Cisco Systems", not "Information Systems"); names a known employer ("Infosys";
"Google" but not "Google Analytics"); follows a cue ("at", "joined", "graduated from"); or
stands alone as a part of a header line ("Engineer | Air Canada | 2019") without a
section, job-title, skill or activity word in it. Other capitalised words (sentence
starts, skills, job titles, headings) are not claims. The input is read leniently: every
word and acronym in it counts, wherever it stands.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

from cvml.safety.fabrication.claims import _SMALL, _TENS, Claim, _Found, _overlap
from cvml.safety.textscore import ACTION_VERBS


@lru_cache(maxsize=65536)
def _norm_token(token: str) -> str:
    """How entity words are compared: case, accents, dots, possessives and plurals dropped."""
    token = unicodedata.normalize("NFKD", token.casefold())
    token = "".join(c for c in token if not unicodedata.combining(c))
    token = _POSSESSIVE.sub("", token).translate(_DROP)
    if token == "&":
        return "and"
    if token.endswith("ies") and len(token) > 4:
        return token[:-3] + "y"
    return token[:-1] if token.endswith("s") and len(token) > 3 and not token.endswith(("ss", "us", "is")) else token


_POSSESSIVE = re.compile(r"['’]s$")
_DROP = str.maketrans("", "", ".'’")


def _lexicon(words: str) -> frozenset[str]:
    return frozenset(_norm_token(w) for w in words.split())


_RUN_TOKEN = re.compile(r"&|[^\W_](?:[\w'’&]|[.-](?=[^\W_]))*\.?")
_CONNECTORS = frozenset({"of", "and", "the", "for", "de", "du", "la", "le", "y", "&", "da", "del", "von", "van"})
_LEGAL = _lexicon("inc incorporated ltd limited llc llp lp plc corp corporation co company pvt private gmbh ag sa "
                  "bv nv oy ab as spa srl sarl pte pty")
_STRONG = _LEGAL | _lexicon("bank group holdings bancorp enterprises industries")
_COMMA_SUFFIXES = _lexicon("inc llc llp lp ltd plc corp co gmbh ag sa pvt")  # "Children Toys, Inc."
_SCHOOL = _lexicon("university college institute school academy polytechnic univ universidad universität université "
                   "universiteit conservatory seminary elementary iit nit iim iiit bits")
# Organisation words, compared as written: "Systems" ends a firm's name, "System" a thing.
_WEAK = frozenset("""technologies solutions systems services software labs laboratories consulting consultants
consultancy partners ventures associates analytics studios media retail insurance health healthcare hospital clinic
foods motors telecom telecommunications freight logistics energy airlines airways pharmaceuticals pharma networks
capital manufacturing travel housing cloud digital infotech infosystems interactive entertainment brands stores
markets resources engineering construction communications electronics automotive biotech therapeutics financial
securities investments trust foundation trading publishing shipping printing staffing catering centre center""".split())
_SUFFIXES = _STRONG | _SCHOOL | _lexicon(" ".join(_WEAK))
# Words that make a suffixed run a field rather than a firm ("Information Systems").
_GENERIC = _lexicon("""information financial finance business customer client data web hardware it technical
professional managed human support quality security network enterprise management marketing sales design creative
global national international public social mobile computer research education medical legal field user shared core
embedded integrated distributed internal external general legacy new key strategic operational operations product
project program programme content banking investment wealth asset risk credit tax audit accounting payroll hr team
staff home office family patient student community emergency clinical computing application infrastructure platform
payment commercial corporate wholesale present current""") | _lexicon(" ".join(_WEAK))
_MONTHS = _lexicon("""january february march april may june july august september october november december jan feb
mar apr jun jul aug sep sept oct nov dec monday tuesday wednesday thursday friday saturday sunday""")
# Words a capitalised run may start with that are no part of a name (compared in lower case).
_LEAD = ACTION_VERBS | _CONNECTORS | frozenset("""a an our my his her their at in for with from as also worked working
work joined join joining currently previously formerly then now served serving employed intern internship experience
experienced key proven former current responsible hired used using helped assisted did was were is am are have has
had became gained earned received awarded graduated studied attended pursued pursuing holds holding completed
achieved this that these those while during after before since when where graduate alumnus alumna""".split())
# Words that end a run even in capitals ("DEGREE FROM DAYSTAR UNIVERSITY", "ACME FOR SIX MONTHS").
_BREAKERS = frozenset("""from at in with to by on as until since while into via during after before within through
is was were are or per than year years month months week weeks day days hour hours""".split()) | set(_SMALL + _TENS)
# Words no organisation's name holds: CV sections, job titles, self-descriptions.
_NOT_ORG = _lexicon("""summary profile experience skills skill education competencies achievements highlights history
objective qualifications certifications certificate projects project references languages interests contact details
information overview expertise responsibilities duties accomplishments awards publications training volunteer
employment career engineer developer manager analyst consultant director lead head specialist officer assistant
associate executive intern architect administrator coordinator designer scientist president vp supervisor
representative technician teacher nurse accountant programmer tester trainee member owner founder partner senior
junior principal chief professional leader player expert enthusiast achiever communicator individual person candidate
graduate student thinker""")
# Tools and skills CVs write in capitals: no employer's name on their own.
_TOOLS = _lexicon("""python java javascript typescript sql mysql postgresql postgres mongodb excel powerpoint outlook
tableau power bi looker hubspot jira confluence git github gitlab docker kubernetes aws azure gcp linux unix windows
react angular vue node django flask spark hadoop kafka airflow terraform ansible jenkins selenium cypress figma
photoshop illustrator indesign canva quickbooks xero workday bamboohr zendesk epic matlab solidworks autocad tensorflow
pytorch pandas numpy php ruby golang rust swift kotlin html css seo sem ppc crm erp api rest graphql agile scrum kanban
lean sigma itil etl ux ui qa devops""")
# Endings of skills and activities ("Machine Learning", "Stakeholder Management").
_ACTIVITY = re.compile(r"(?:ing|ment|ion|ics|ity|ness|ship|ance|ence|ology|sis)$")
_ORG_NOUNS = _lexicon("corporation foundation association federation organisation organization commission institution "
                      "union coalition")
# Employers known by one word; those that are also products count only outside a tool phrase.
_BRANDS = _lexicon("""infosys wipro accenture deloitte kpmg pwc capgemini cognizant genpact mindtree mphasis hcl tcs
mckinsey barclays hsbc citibank citigroup jpmorgan walmart flipkart unilever nestle pepsico facebook netflix uber
airbnb tesla boeing siemens samsung ericsson nokia vodafone verizon honeywell schlumberger halliburton philips huawei
lenovo paypal ebay twitter spotify novartis pfizer""")
_PRODUCT_BRANDS = _lexicon("google microsoft amazon oracle sap salesforce adobe ibm cisco apple intel dell meta vmware")
# What follows a product brand when the words name the firm ("Microsoft India", "Cisco Systems")
# rather than a product ("Google Analytics", "Amazon Web Services").
_FIRM_AFTER_BRAND = _lexicon("india usa us uk europe emea apac asia america canada australia germany china japan "
                             "singapore ireland africa labs research systems technologies solutions networks "
                             "consulting")
_SCHOOL_ACRONYMS = _lexicon("mit ucla nyu usc ucl lse eth epfl cmu kaist nus ntu iisc insead")
_TOOL_CUE = re.compile(r"(?i)\b(?:using|use|with|in|on|via|through|into|of|and)\s+$")
_SCHOOL_CUE = re.compile(r"(?i)(?:\bgraduated from|\bgraduate of|\bstudied at|\bdegree from|\balumn(?:us|a|i) of)"
                         r"[ \t]+(?:the[ \t]+)?$")
_SCHOOL_CUE_AFTER = re.compile(r"[ \t]+(?i:alumn(?:us|a|i)|graduate)\b")
_EMPLOYER_CUE = re.compile(r"(?i)(?:\bat|\bjoined|\bjoining|\bemployed by|\bworked for|\bworking for|\bwork for"
                           r"|\b(?:company|employer|organi[sz]ation|firm)[ \t]?:)[ \t]+(?:the[ \t]+)?$")
# Where a sentence or bullet begins: its first word is capitalised whatever it is.
_SENTENCE_START = re.compile(r"(?:^|[\n.!?:;|•·▪●*>-])[\s\"'(]*$")
# What separates the parts of a header line ("Engineer | Acme Corp | 2019", "Acme — Engineer");
# in a line that holds a year or a job title, commas too ("Teacher, Oak Hill School, Leeds").
_DELIMITER = re.compile(r"[|•·▪●():]|\s[-–—]\s?|[-–—]\s")
_DELIMITER_OR_COMMA = re.compile(r"[|•·▪●():,;]|\s[-–—]\s?|[-–—]\s")
_TITLES = ("engineer|developer|manager|analyst|consultant|director|officer|assistant|specialist|executive|intern"
           "|architect|administrator|coordinator|designer|scientist|president|supervisor|representative|technician"
           "|teacher|nurse|accountant|programmer|lecturer|professor|tutor|lawyer|paralegal|instructor|producer|editor"
           "|writer|clerk|cashier|associate|principal|head|lead|founder|trainee")
_TITLE_WORD = re.compile(rf"(?i:\b(?:{_TITLES})s?\b)")
_HEADER_HINT = re.compile(rf"(?<!\d)(?:19|20)\d\d(?!\d)|(?i:\b(?:present|current|{_TITLES})s?\b)")
_ACRONYM = re.compile(r"\b[A-Z]{2,6}\b")

Token = tuple[int, int, str]  # (start, end, word)


def _runs(masked: str) -> list[list[Token]]:
    """Runs of capitalised words with connectors inside ("Bank of America"); a comma
    joins a run only to an abbreviated legal suffix ("Children Toys, Inc.")."""
    runs: list[list[Token]] = []
    current: list[Token] = []
    for m in _RUN_TOKEN.finditer(masked):
        word, end = m.group(), m.end()
        if word.endswith(".") and "." not in word[:-1] and len(word) > 2 and _norm_token(word) not in _LEGAL:
            word, end = word[:-1], end - 1  # a full stop, not an abbreviation's dot
        gap = masked[current[-1][1]:m.start()] if current else ""
        joined = gap in (" ", "\u00a0") or (gap == ", " and _norm_token(word) in _COMMA_SUFFIXES)
        if word.lower() in _BREAKERS:
            runs.append(current)
            current = []
        elif word[0].isupper() or word == "&" or (joined and current and _connects(word, current)):
            if current and not joined:
                runs.append(current)
                current = []
            current.append((m.start(), end, word))
        elif current:
            runs.append(current)
            current = []
    runs.append(current)
    return [run for run in map(_trim, runs) if run]


def _connects(word: str, run: list[Token]) -> bool:
    """Whether a lower-case word continues a run: "of", "the", a school's keyword ("Clive
    school of Nursing"); "and" only after an "of" ("Institute of Science and Technology"),
    since it mostly joins lists of skills."""
    if word == "and":
        return any(w.lower() == "of" for _, _, w in run)
    return word in _CONNECTORS or _norm_token(word) in _SCHOOL


def _trim(run: list[Token]) -> list[Token]:
    """The run without connectors at its ends and leading words such as "Led" or "Joined"."""
    while run and run[-1][2].lower() in _CONNECTORS:
        run = run[:-1]
    while run and run[0][2].lower() in _LEAD:
        run = run[1:]
    return run


def _entities(masked: str, text: str, exclude: list[tuple[int, int]]) -> list[_Found]:
    """Employers and schools: the runs (cut around degrees) that look like organisations."""
    found = []
    for run in _runs(masked):
        for part in _split_at(run, exclude):
            kind = _entity_kind(masked, part)
            if kind:
                start, end = part[0][0], part[-1][1]
                tokens = _distinctive([word for _, _, word in part])
                rest = _distinctive([word for _, _, word in part[1:]]) if _SENTENCE_START.search(masked, 0, start) \
                    else ()
                found.append(_Found(Claim(kind, text[start:end], (start, end), " ".join(tokens)), tokens=tokens,
                                    rest=() if all(t in _SUFFIXES for t in rest) else rest))
    return found


def _split_at(run: list[Token], exclude: list[tuple[int, int]]) -> list[list[Token]]:
    """The pieces of a run outside the excluded spans."""
    parts: list[list[Token]] = [[]]
    for token in run:
        if any(_overlap(token[:2], span) for span in exclude):
            parts.append([])
        else:
            parts[-1].append(token)
    return [part for part in map(_trim, parts) if part]


def _entity_kind(masked: str, run: list[Token]) -> str | None:
    """"school", "employer" or None (no organisation) for a run of capitalised words."""
    words = [_norm_token(word) for _, _, word in run]
    content = [w for w in words if w not in _CONNECTORS]
    if all(w in _LEGAL for w in content):
        return None  # "LLC" on its own names no one
    before = masked[max(0, run[0][0] - 24):run[0][0]]
    if (any(w in _SCHOOL for w in words) or (run[0][2] == "TU" and len(run) > 1) or _SCHOOL_CUE.search(before)
            or _SCHOOL_CUE_AFTER.match(masked, run[-1][1]) or (len(words) == 1 and words[0] in _SCHOOL_ACRONYMS)):
        return "school"
    if len(content) > 1 and any(w in _STRONG for w in content):
        return "employer"
    if content[0] in _PRODUCT_BRANDS and len(content) > 1 and content[1] not in _FIRM_AFTER_BRAND:
        return "employer" if _EMPLOYER_CUE.search(before) else None  # "Google Analytics" is a tool
    if len(content) > 1 and run[-1][2].lower() in _WEAK and not all(w in _GENERIC for w in content):
        return "employer"
    if _is_brand(words, before):
        return "employer"
    if _EMPLOYER_CUE.search(before) and len(content) <= 5 and not all(
            w in _GENERIC or w in _MONTHS or w in _NOT_ORG for w in content):
        return "employer"
    segment = _segment_before(masked, run[0][0], run[-1][1])
    if segment is not None and _looks_like_a_name(content, run[-1][2], after_title=bool(_TITLE_WORD.search(segment))):
        return "employer"
    return None


def _is_brand(words: list[str], before: str) -> bool:
    """A one-word employer: "Infosys" anywhere; "Google" unless it names a tool ("using
    Google", "Google Analytics"), though "Microsoft India" is the firm."""
    if words[0] in _BRANDS:
        return True
    if words[0] not in _PRODUCT_BRANDS:
        return False
    if _EMPLOYER_CUE.search(before):
        return True
    return not _TOOL_CUE.search(before) and (len(words) == 1 or words[1] in _FIRM_AFTER_BRAND)


def _segment_before(masked: str, start: int, end: int) -> str | None:
    """If masked[start:end] is a whole part of its line (parts are split by _DELIMITER),
    the part before it ("" at the line's start); otherwise None."""
    line_start = masked.rfind("\n", 0, start) + 1
    line_end = masked.find("\n", end) % (len(masked) + 1)
    line = masked[line_start:line_end]
    pattern = _DELIMITER_OR_COMMA if _HEADER_HINT.search(line) else _DELIMITER
    cuts = [(m.start() + line_start, m.end() + line_start) for m in pattern.finditer(line)]
    before = [cut for cut in cuts if cut[1] <= start]
    after = [cut for cut in cuts if cut[0] >= end]
    lead = masked[before[-1][1] if before else line_start:start].strip()
    if lead.lower() not in ("", "the") or masked[end:after[0][0] if after else line_end].strip():
        return None
    if not before:
        return ""
    return masked[before[-2][1] if len(before) > 1 else line_start:before[-1][0]]


def _looks_like_a_name(content: list[str], last: str, after_title: bool) -> bool:
    """Whether a header part names an organisation: two words or more, or one right after
    a job title ("Marketing Assistant, FLASHSTARTS"), none of them a section, title or
    skill word, not ending in an activity ("Data Management"), not all generic."""
    if len(content) == 1 and not (after_title and len(content[0]) > 2):
        return False
    return (content[0] not in _PRODUCT_BRANDS and not any(w in _NOT_ORG or w in _MONTHS or w in _TOOLS for w in content)
            and not (_ACTIVITY.search(last.lower()) and content[-1] not in _ORG_NOUNS)
            and not all(w in _GENERIC for w in content))


def _distinctive(words: list[str]) -> tuple[str, ...]:
    """The words an entity is matched by: normalised, without connectors and legal suffixes."""
    tokens = [_norm_token(w) for w in words]
    kept = [t for t in tokens if t not in _CONNECTORS and t not in _LEGAL]
    return tuple(kept or [t for t in tokens if t not in _CONNECTORS])


class _EntityIndex:
    """What an input offers to support entities: its words, short joins of them ("J.P.
    Morgan" -> "jpmorgan"), its acronyms and the initials of its capitalised runs
    ("Tata Consultancy Services Ltd" -> "tcs")."""

    def __init__(self, text: str):
        tokens = [_norm_token(m.group()) for m in _RUN_TOKEN.finditer(text)]
        self.words = set(tokens) | {part for t in tokens if "-" in t for part in t.split("-")}
        self.joined = {"".join(tokens[i:i + n]).replace("-", "") for n in (2, 3, 4) for i in range(len(tokens))}
        self.acronyms = {m.group().lower() for m in _ACRONYM.finditer(text)}
        self.initials = {"".join(t[:1] for t in _distinctive([w for _, _, w in run])) for run in _runs(text)}

    def supports(self, tokens: tuple[str, ...]) -> bool:
        if all(t in self.words for t in tokens):
            return True
        compact = "".join(tokens).replace("-", "")
        if len(compact) >= 4 and (compact in self.words or compact in self.joined):
            return True
        if len(tokens) == 1 and tokens[0] in self.initials:
            return True
        return len(tokens) > 1 and "".join(t[:1] for t in tokens) in self.acronyms
