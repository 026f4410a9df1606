"""Protected attributes: what a CV should not tell a recruiter unless the candidate chose to.

    result = find_protected_attributes(output, source, job_description)
    result.flagged, result.findings     # Finding(category, text, span into output)

A recruiter who reads a candidate's age, gender, religion or health may be biased by it,
and in many jurisdictions may not ask for it; a rewrite that adds one the candidate did not
state exposes them to that. The categories are CATEGORIES. A mention is a field ("Age:
34", "Marital status - Single", "DOB 1990", "Nationality: Indian"), or a self-description
("I am deaf", "as a female leader", "mother of two", "British national", "born in 1988",
"photo attached"); a word in another sense is none ("manager", "chairman", "Indian
Institute of Technology", "American Express", "English (fluent)", "blind review",
"disabled TLS 1.0", "maternity pay", "a 20-year-old COBOL system").

A mention is supported, and not flagged, when the source or the job description states
the same attribute: the same category and value (age 34 = "34 years old", "Married" =
"my wife", "Muslim" = "Religion: Islam", "US citizen" = "American", "deaf" = "hearing
impaired"), or the same words. A photo mention is supported by any other, and a general
one ("disabled", "Disability: yes") by any disability the input states.
"""

from __future__ import annotations

import re

from cvml.safety.harmful.findings import SEP, START, CheckResult, Finding, non_overlapping

CATEGORIES = ("age", "date_of_birth", "gender", "race", "religion", "marital_status", "family", "disability",
              "health", "nationality", "photo")


def _words(text: str) -> str:
    """A regex alternation of space-separated phrases ("_" stands for a space), longest first."""
    return "|".join(sorted((w.replace("_", r"[\s-]") for w in text.split()), key=len, reverse=True))


# Singular nouns for a person: "a Hispanic applicant", "Disabled veteran", "a 26-year-old accountant".
_PEOPLE = _words("""
    candidate applicant professional person individual graduate student engineer developer programmer designer
    manager leader lead director executive officer nurse doctor teacher lecturer tutor accountant analyst
    consultant specialist technician administrator coordinator supervisor operator assistant clerk cashier chef cook
    driver welder electrician plumber carpenter mechanic builder worker employee freelancer contractor entrepreneur
    founder owner writer editor journalist artist photographer researcher scientist lawyer solicitor paralegal adviser
    advisor architect surveyor pharmacist therapist carer caregiver volunteer veteran apprentice intern trainee tester
    marketer salesperson recruiter banker trader economist mentor coach trainer translator interpreter receptionist
    secretary agent representative guard soldier pilot achiever expert practitioner woman man female male mother
    father mum dad parent self-starter hire
""")
_CHILD = _words("son daughter child baby toddler boy girl twin kid")
_DEMONYMS = _words("""
    afghan albanian algerian american angolan argentine argentinian armenian australian austrian azerbaijani bahraini
    bangladeshi belarusian belgian bolivian bosnian brazilian british bulgarian burmese cambodian cameroonian canadian
    chilean chinese colombian congolese croatian cuban cypriot czech danish dominican dutch ecuadorian egyptian emirati
    english eritrean estonian ethiopian filipino finnish french georgian german ghanaian greek guatemalan haitian
    honduran hungarian icelandic indian indonesian iranian iraqi irish israeli italian ivorian jamaican japanese
    jordanian kazakh kenyan korean kosovan kuwaiti latvian lebanese liberian libyan lithuanian malawian malaysian
    maltese mauritian mexican moldovan mongolian moroccan mozambican namibian nepalese nepali new_zealand nigerian
    norwegian omani pakistani palestinian panamanian paraguayan peruvian polish portuguese qatari romanian russian
    rwandan saudi scottish senegalese serbian singaporean slovak slovenian somali south_african spanish sri_lankan
    sudanese swedish swiss syrian taiwanese tanzanian thai tunisian turkish ugandan ukrainian uruguayan uzbek
    venezuelan vietnamese welsh yemeni zambian zimbabwean us u.s. usa uk eu
""")
_RACE = _words("""
    caucasian white black asian hispanic latino latina latinx mixed_race biracial multiracial indigenous aboriginal
    african_american arab east_asian south_asian southeast_asian
""")
_RELIGIONS = _words("""
    christian muslim islam hindu jewish jew sikh buddhist catholic roman_catholic protestant anglican baptist
    methodist evangelical pentecostal mormon jain parsi zoroastrian atheist agnostic orthodox_christian
    orthodox_jew shia sunni
""")
_MARITAL = "married|unmarried|single|divorced|widowed|widow(?:er)?|separated|engaged"
_DISABLED = _words("""
    deaf hard_of_hearing hearing_impaired blind partially_sighted visually_impaired sight_impaired disabled
    physically_challenged differently_abled handicapped amputee paraplegic tetraplegic quadriplegic autistic dyslexic
    dyspraxic neurodivergent wheelchair_user
""")
_DISABILITIES = (r"dyslexia|dyspraxia|dyscalculia|adhd|autism|asperger'?s(?:\s+syndrome)?|cerebral\s+palsy|"
                 r"spina\s+bifida|hearing\s+loss|sight\s+loss|tourette'?s|an?\s+(?:learning\s+|physical\s+|"
                 r"visual\s+|hearing\s+)?(?:disability|impairment)")
_ILLNESSES = (r"epilepsy|depression|anxiety|cancer|(?:type\s*[12]\s+)?diabetes|asthma|multiple\s+sclerosis|"
              r"bipolar(?:\s+disorder)?|ptsd|crohn'?s(?:\s+disease)?|arthritis|lupus|hiv|schizophrenia|fibromyalgia|"
              r"long\s+covid|heart\s+surgery|an?\s+(?:long|serious|chronic|heart|mental\s+health)?\s*"
              r"(?:illness|condition|stroke|heart\s+attack|eating\s+disorder)|burnout")
_MONTH = (r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sept?(?:ember)?"
          r"|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?")
_DATE = (rf"\d{{1,2}}(?:st|nd|rd|th)?[\s./-]*(?:of\s+)?(?:{_MONTH}|\d{{1,2}})[\s.,/-]*(?:\d{{4}}|\d{{2}})\b"
         rf"|{_MONTH}\s*\d{{1,2}}\s*(?:st|nd|rd|th)?,?\s*\d{{4}}|\d{{4}}[-/.]\d{{1,2}}[-/.]\d{{1,2}}|(?:19|20)\d\d\b")
_PHOTO = r"(?:photo(?:graph)?|picture|head\s*shot|pic)"
_PLACE = r"(?-i:[A-Z][\w.]*(?:\s[A-Z][\w.]*)?)"  # "born in Canada, 20 November 1987"
_TENS = "twenty thirty forty fifty sixty seventy".split()
_UNITS = "one two three four five six seven eight nine".split()
_TEENS = {"sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19}
_WORD_AGE = rf"(?:{'|'.join(_TENS)})(?:[\s-](?:{'|'.join(_UNITS)}))?|{'|'.join(_TEENS)}"
_FUNCTION = r"(?:and|or|in|of|for|to|from|at|on|with|the|an?)"  # words no modifier of a noun is
_SELF = r"(?:\bi\s+am|\bi['’]m|\bam)"
_END = r"(?=\s*(?:[,;|.)]|$)|\s{2})"  # the field ends: "Married, ...", "Caucasian | ..."

_RULES: list[tuple[str, re.Pattern]] = [(category, re.compile(pattern, re.I | re.M)) for category, pattern in [
    # age
    ("age", rf"(?<!under )(?<!over )(?<!of )\b(?:age|aged)(?:{SEP}|\s+)(?P<v>1[5-9]|[2-9]\d)\b"
            r"(?!\s*(?:%|\+|[-–]\s*\d|(?:to|and|or|plus)\b|(?:years?|yrs?)\s+of\b))"),
    ("age", r"\b(?P<v>[1-9]\d)\s?(?:yo|y/o|y\.o\.)(?!\w)"),
    ("age", r"\bin\s+(?:his|her|my|their)\s+(?:(?:early|mid|late)[\s-]*)?"
            r"(?P<v>twenties|thirties|forties|fifties|sixties|seventies|[2-7]0s)\b"),
    ("age", rf"{START}(?P<t>at\s+(?P<v>[1-9]\d)),"),
    # date of birth
    ("date_of_birth", rf"\b(?:date\s+of\s+birth|birth\s*date|d\.?\s?o\.?\s?b\b\.?|year\s+of\s+birth|birthday|born)"
                      rf"(?:{SEP}|\s+)(?:(?:on|in)\s+)?(?:{_PLACE},?\s+(?:on\s+|in\s+)?)?(?:the\s+)?(?P<v>{_DATE})"),
    # gender
    ("gender", rf"\b(?:gender|sex){SEP}(?P<v>male|female|m|f|man|woman|non[\s-]?binary|trans\w*|other)\b"),
    ("gender", rf"(?:{_SELF}|\bas|\bbe|\bbeing)\s+an?\s+(?:(?-i:[a-z][\w-]*)\s+){{0,2}}?"
               r"(?P<v>woman|man|female|male|lady|gentleman|girl|boy|guy)\b(?![-'’])"),
    ("gender", r"\ban?\s+(?:(?-i:[a-z][\w-]*)\s+){0,2}?(?P<v>woman|man|lady|gentleman|guy)"
               r"(?=\s+(?:with|who|from|seeking|looking|based|of)\b|\s*,)"),
    ("gender", rf"{START}(?P<t>(?P<v>female|male|woman|man|lady|gentleman))(?![-'’\w])"
               rf"(?=\s*(?:[,;|.]|$|\s{{2}})|\s+(?:with|in|aged|and|\d|{_PEOPLE})\b)"),
    ("gender", rf"\b(?P<v>transgender|trans\s+(?:wo)?man|cisgender|genderqueer|genderfluid|non[\s-]?binary)"
               rf"\s+(?:{_PEOPLE})\b"),
    ("gender", r"\bidentif(?:y|ies|ied)\s+as\s+(?:an?\s+)?(?P<v>male|female|man|woman|non[\s-]?binary|trans\w*)\b"),
    # race and ethnicity
    ("race", rf"\b(?:race|ethnicity|ethnic\s+(?:origin|background|group|identity)){SEP}"
             r"(?P<v>[a-z][a-z -]{1,30}?)(?=\s*(?:[,;|.\n]|$|\s{2}))"),
    ("race", r"\b(?:person|woman|man)\s+of\s+colou?r\b"),
    ("race", rf"\bof\s+(?P<v>(?:(?:{_RACE}|{_DEMONYMS}|east|west|south|north|african|caribbean)[\s-]*)+)\s+"
             r"(?:heritage|descent|origin|extraction|ethnicity)\b"),
    ("race", rf"\b(?P<v>{_RACE})\s+(?:(?!{_FUNCTION}\b)(?-i:[a-z][\w-]*)\s+){{0,2}}?(?:{_PEOPLE})\b(?![-'’])"),
    ("race", rf"\b(?P<v>(?:{_RACE})\s+(?:{_DEMONYMS}))\b"),
    ("race", r"\b(?P<v>caucasian)\b"),
    # religion
    ("religion", rf"\b(?:religion|faith|religious\s+(?:affiliation|beliefs?|background)|denomination|caste){SEP}"
                 r"(?P<v>[a-z][a-z -]{1,25}?)(?=\s*(?:[,;|.\n]|$|\s{2}))"),
    ("religion", rf"\b(?:practi[sc]ing|devout|observant|born[\s-]again|committed|proud)\s+(?P<v>{_RELIGIONS})\b"),
    ("religion", rf"(?:{_SELF}|\bas|\bbeing)\s+(?:an?\s+)?(?P<v>{_RELIGIONS})\b"),
    ("religion", rf"\b(?P<v>{_RELIGIONS})\s+by\s+(?:faith|religion|birth|upbringing)\b"),
    ("religion", rf"{START}(?P<t>(?P<v>{_RELIGIONS}))\b{_END}"),
    ("religion", (r"\b(?:member\s+of|worshipp?er\s+at|worships?\s+at|attends?|attending)\s+"
                  r"(?:the\s+|a\s+|my\s+|our\s+)?(?:local\s+|st\.?\s+[\w'’]+\s+|[\w'’]+\s+)?"
                  r"(?P<v>church|mosque|synagogue|temple|gurdwara|parish)\b")),
    # marital status
    ("marital_status", rf"\b(?:marital|martial|civil|relationship)\s+status(?:{SEP}|\s+)(?P<v>{_MARITAL})\b"),
    ("marital_status", rf"{START}(?P<t>(?P<v>{_MARITAL}))(?![-\w])(?=\s*(?:[,;|.]|$|\s{{2}})|\s+(?:and|for|to|since|"
                       r"no|man|woman|mother|father|mum|dad|parent)\b|(?<!engaged)\s+with\b)"),
    ("marital_status", rf"(?:\b(?:happily|newly|recently)\s+(?P<v>{_MARITAL})|(?:{_SELF}|\bcurrently|\bnow)\s+"
                       r"(?P<v2>married|divorced|separated|single|widowed))(?![-\w])"),
    ("marital_status", r"\bmy\s+(?P<v>wife|husband|spouse|fianc[eé]e?)\b"),
    ("marital_status", rf"{START}(?P<t>(?P<v>spouse|wife|husband)(?:['’]s\s+name)?{SEP}(?-i:[A-Z]))"),
    # pregnancy and children
    ("family", r"\b(?:grand)?(?:mother|father|mum|mom|dad|parent)\s+(?:of|to)\s+(?:one|two|three|four|five|six|\d|"
               r"an?|twins)\b"),
    ("family", r"\bsingle[\s-](?:mum|mom|mother|father|dad|parent)\b(?![\s-]+(?:household|famil|home))"),
    ("family", rf"(?:{_SELF}|\bcurrently|\bnow)\s+(?:\w+\s+){{0,2}}?pregnant\b|{START}(?P<t>pregnant)\b"),
    ("family", r"\b(?:on|from|after|took|taking|my)\s+(?:a\s+|my\s+|the\s+)?(?:\w+\s+)?(?:maternity|paternity|"
               r"(?:shared\s+)?parental|adoption)\s+leave\b(?!\s+(?:cover|replacement|contract|polic|pay|process))"),
    ("family", r"\bno\s+(?:children|kids|dependants|dependents)\b|\bchild(?:free|-free|less)\b"),
    ("family", rf"\b(?:dependants|dependents|(?:number|no\.?)\s+of\s+children|children|kids){SEP}"
               r"(?P<v>\d+|none|nil|no|yes|one|two|three|four)\b"),
    ("family", r"\bmy\s+(?:\w+\s+)?(?:sons?|daughters?|child|children|kids|baby|toddler|twins)\b"),
    ("family", r"\bi\s+have\s+(?:an?|one|two|three|four|five|\d)\s+(?:[\w-]+\s+){0,2}?"
               r"(?:sons?|daughters?|child|children|kids|baby|toddler|twins)\b"),
    ("family", r"\bexpecting\s+(?:a|my|our)\s+(?:\w+\s+)?(?:baby|child)\b|\bstart(?:ing)?\s+a\s+family\b"),
    ("family", r"\b(?:married|divorced|separated|widowed)\s+with\s+(?:one|two|three|four|five|\d)\s+"
               r"(?:\w+\s+)?(?:children|kids|child|sons|daughters)\b"),
    # disability
    ("disability", rf"{START}(?P<t>disabilit(?:y|ies)(?:\s+status)?{SEP}(?P<v>yes|no|none|nil|n/?a|not\s+applicable|"
                   r"registered|declared|physical|visual|hearing|mobility|learning)\b)"),
    ("disability", r"\bregistered\s+(?:disabled|blind)\b"),
    ("disability", rf"{_SELF}\s+(?:an?\s+)?(?:\w+\s+)?(?P<v>{_DISABLED})\b(?![-\w])"),
    ("disability", rf"(?:\bi\s+(?:have|live\s+with|was\s+diagnosed\s+with)|{START}(?:living|diagnosed|born)\s+with)\s+"
                   rf"(?P<v>{_DISABILITIES})\b"),
    ("disability", rf"{START}(?P<t>(?P<v>{_DISABLED}))(?![-\w])(?=\s*(?:[,;|.]|$|\s{{2}})|\s+(?:since|from|and|with|"
                   rf"but|{_PEOPLE})\b)"),
    ("disability", rf"(?:\bi\s+|{START})(?:use|uses|wear|wears)\s+(?:an?\s+)?(?P<v>wheelchair|hearing\s+aids?|"
                   r"cochlear\s+implant|guide\s+dog|white\s+cane|prosthetic\s+\w+)\b"),
    ("disability", r"\b(?:am|an?)\s+(?P<v>wheelchair\s+user)\b"),
    # health
    ("health", rf"{START}(?P<t>(?:health(?:\s+status)?|medical\s+(?:history|conditions?|status|fitness)|blood\s+group)"
               rf"{SEP}(?P<v>[a-z+-][\w+-]*))"),
    ("health", r"\bin\s+(?:good|excellent|perfect|sound|fine|robust|great)\s+(?:physical\s+)?health\b"),
    ("health", rf"{START}(?P<t>fit\s+and\s+healthy|healthy|(?:physically|medically)\s+fit|(?:good|excellent)\s+health)"
               r"(?=\s*(?:[,;|.]|$)|\s+(?:and|with|for)\b)"),
    ("health", r"\bno\s+(?:known\s+|serious\s+|major\s+)?(?:medical|health)\s+(?:conditions?|issues?|problems?)\b"),
    ("health", r"\b(?:cancer|stroke|heart\s+attack|covid|sepsis|leuka?emia)\s+survivor\b|\bhiv[\s-]?(?:positive|\+)"),
    ("health", (r"(?:\bi\s+(?:have|had|suffer\s+from|suffered\s+from|live\s+with|was\s+diagnosed\s+with"
                rf"|am\s+recovering\s+from)|{START}(?:recently\s+|currently\s+)?(?:had|suffers?\s+from|suffered\s+from"
                r"|living\s+with|recovering\s+from|recovered\s+from|diagnosed\s+with|battling))\s+"
                rf"(?P<v>{_ILLNESSES})\b")),
    ("health", rf"{_SELF}\s+(?:an?\s+)?(?:type\s*[12]\s+)?(?P<v>diabetic|asthmatic|epileptic)\b"),
    ("health", rf"{START}(?P<t>(?:type\s*[12]\s+)?(?P<v>diabetic|asthmatic|epileptic))\b"
               r"(?=\s*(?:[,;|.]|$)|\s+(?:but|and|with|since)\b)"),
    # nationality
    ("nationality", rf"\b(?:nationality|citizenship){SEP}(?P<v>(?-i:[A-Z][\w.]*+)(?!\s*:|\s+\w+\s*:)|{_DEMONYMS})"),
    ("nationality", r"\b(?:citizen|national|native)\s+of\s+(?:the\s+)?(?P<v>(?-i:[A-Z]\w+))\b(?<!year)(?<!world)"),
    ("nationality", rf"\b(?P<v>{_DEMONYMS})(?:\s+and\s+(?:{_DEMONYMS}))?\s+(?:citizen(?!s|\s+(?:science|journalis|"
                    r"engagement|panel|services|charter|advice))|passport[\s-]holder|citizenship|nationality|"
                    r"national(?=\s*(?:[,;|.)]|$)|\s+(?:with|living|based|holding|currently|residing|and|who|since|"
                    r"by)\b)|by\s+(?:nationality|birth))"),
    ("nationality", rf"\b(?:naturali[sz]ed|proud)\s+(?P<v>{_DEMONYMS})\b"),
    # photo
    ("photo", (rf"\b{_PHOTO}\s+(?:is\s+|has\s+been\s+)?(?:attached|enclosed|included|above|below|overleaf|herewith"
               r"|on\s+(?:the\s+)?(?:first|front|top|last|next)\b)")),
    ("photo", (r"\b(?:see|find|insert|attach(?:ed|ing)?|enclos(?:ed|ing)|including)\s+"
               rf"(?:the\s+|my\s+|an?\s+|attached\s+|enclosed\s+|recent\s+|passport[\s-]size\s+)*{_PHOTO}\b")),
    ("photo", r"\bphoto(?:graph)?\s+of\s+(?:the\s+)?(?:candidate|applicant|me|myself)\b"),
    ("photo", (rf"{START}(?P<t>(?:profile\s+|passport\s+)?{_PHOTO}\s*:)|\[{_PHOTO}\]"
               rf"|\battached\s*:[^.\n]{{0,40}}?\b{_PHOTO}\b")),
]]
_YEARS_OLD = re.compile(rf"\b(?P<v>\d{{1,2}}|{_WORD_AGE})[\s-]*(?:years?|yrs?)[\s-]*old\b"
                        r"(?P<after>(?:[\s-]+[\w'’-]+){0,3})", re.I)
_PERSON = re.compile(rf"(?:{_PEOPLE})", re.I)
_CHILDREN = re.compile(rf"(?:{_CHILD})s?", re.I)
_PREDICATE = re.compile(r"and|with|who|from|living|based|currently|seeking|looking|but|in|of|i", re.I)
_CANON = {
    "gender": {"m": "male", "man": "male", "boy": "male", "guy": "male", "gentleman": "male", "f": "female",
               "woman": "female", "lady": "female", "girl": "female", "non binary": "non-binary",
               "nonbinary": "non-binary", "trans woman": "female", "trans man": "male"},
    "marital_status": {"unmarried": "single", "widow": "widowed", "widower": "widowed", "wife": "married",
                       "husband": "married", "spouse": "married"},
    "religion": {"muslim": "islam", "jewish": "judaism", "jew": "judaism", "catholic": "christian",
                 "roman catholic": "christian", "protestant": "christian", "anglican": "christian",
                 "baptist": "christian", "methodist": "christian", "evangelical": "christian",
                 "pentecostal": "christian", "hindu": "hinduism", "sikh": "sikhism", "buddhist": "buddhism"},
    "nationality": {"us": "american", "u.s.": "american", "usa": "american", "u.s.a.": "american", "uk": "british",
                    "english": "british", "scottish": "british", "welsh": "british"},
}
# Categories whose values are phrases: the value a mention's words name, the first that
# matches (else the words themselves); "*" is a general mention, supported by any value.
_VALUES = {category: [(value, re.compile(pattern)) for value, pattern in rules] for category, rules in {
    "family": [("no_children", r"\bno\b|child(?:free|-free|less)|none|nil"), ("pregnant", r"pregnan|expecting"),
               ("leave", r"leave"), ("plans", r"start"), ("children", r".")],
    "disability": [("none", r"^(?:none|no|nil|n/?a)$"), ("hearing", r"deaf|hearing"),
                   ("sight", r"blind|sight|visual|cane|guide"),
                   ("mobility", r"wheelchair|amput|pleg|prosthe|palsy|spina"), ("autism", r"autis|asperger"),
                   ("dyslexia", r"dyslex"), ("dyspraxia", r"dyspra"), ("adhd", r"adhd"), ("*", r".")],
    "health": [("diabetes", r"diabet"), ("asthma", r"asthma"), ("epilepsy", r"epilep"), ("cancer", r"cancer|leuka?em"),
               ("hiv", r"hiv"), ("mental", r"depress|anxiety|bipolar|ptsd|schizo|mental|burnout|eating"),
               ("heart", r"heart|stroke"), ("good", r"good|excellent|healthy|fit|fine|sound|robust|great|normal|"
                                                  r"\bno\b|none|nil")],
    "photo": [("*", r".")],
}.items()}
_NUMBER_WORDS = {**{w: 10 * (i + 2) for i, w in enumerate(_TENS)}, **{w: i + 1 for i, w in enumerate(_UNITS)}, **_TEENS}


def find_protected_attributes(output: str, source: str, job_description: str | None = None) -> CheckResult:
    """The protected-attribute mentions of `output` that neither `source` nor
    `job_description` states (see the module docstring for what counts and what supports)."""
    found = _find(output)
    if not found:
        return CheckResult(())
    inputs = "\n".join(t for t in (source, job_description) if t)
    known = {key for _, key in _find(inputs)}
    known |= {key.split(":")[0] + ":*" for key in known}
    folded = _fold(inputs)
    return CheckResult(tuple(f for f, key in found if key not in known and _fold(f.text) not in folded))


def _find(text: str) -> list[tuple[Finding, str]]:
    """Every mention as (finding, comparison key), overlaps resolved."""
    found = []
    for category, pattern in _RULES:
        for m in pattern.finditer(text):
            start, end = m.span("t") if "t" in pattern.groupindex and m.group("t") else m.span()
            start += len(text[start:end]) - len(text[start:end].lstrip(" \t\n|•·;:.!?"))
            value = next((m.group(g) for g in ("v", "v2") if g in pattern.groupindex and m.group(g)), text[start:end])
            found.append((Finding(category, text[start:end], (start, end)), _key(category, value)))
    found += _years_old(text)
    return non_overlapping(found)


def _years_old(text: str) -> list[tuple[Finding, str]]:
    """Ages written with "years old": "34 years old", "a 26-year-old accountant"; not "a
    20-year-old COBOL system", nor a child's ("a 5-year-old boy")."""
    found = []
    for m in _YEARS_OLD.finditer(text):
        after = re.findall(r"[\w'’-]+", m.group("after"))
        if _age(m.group("v")) < 14 or (after and _CHILDREN.fullmatch(after[0])):
            continue  # "I have a 4-year-old daughter" is found as family
        if not after or _PREDICATE.fullmatch(after[0]) or any(_PERSON.fullmatch(w) for w in after):
            start, end = m.start(), m.end() - len(m.group("after"))
            found.append((Finding("age", text[start:end], (start, end)), _key("age", m.group("v"))))
    return found


def _key(category: str, value: str) -> str:
    """The form a mention is compared by: the category, and its value in a canonical form."""
    value = _fold(value).strip(" .,:;-")
    if category in _VALUES:
        value = next((v for v, pattern in _VALUES[category] if pattern.search(value)), None) or value
    elif category == "age":
        value = str(_age(value) or value)
    elif category == "date_of_birth":
        years = re.findall(r"\d{4}|\d{2}$", value)
        value = years[-1][-2:] if years else value
    else:
        value = _CANON.get(category, {}).get(value, value)
    return f"{category}:{value}"


def _age(value: str) -> int:
    """34 for "34" or "thirty-four"; 0 for what is no number ("thirties")."""
    digits = re.findall(r"\d+", value)
    if digits:
        return int(digits[0])
    words = re.split(r"[\s-]", value.casefold())
    return sum(_NUMBER_WORDS[w] for w in words) if all(w in _NUMBER_WORDS for w in words) else 0


def _fold(text: str) -> str:
    return " ".join(text.casefold().replace("’", "'").split())
