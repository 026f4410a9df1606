"""Degrees: abbreviations ("B.Tech", "MBA", "Ph.D"), long forms ("Master of Science in ..."),
and generic ones ("bachelor's degree", "diploma"), each read to a canonical id and a level.

A degree is supported by the same canonical id in any written form ("B.Tech" = "BTech" =
"Bachelor of Technology"); a generic "bachelor's degree" is supported by any bachelor's
and supports any bachelor's. Forms that are also words ("MS Office", "Boston, MA") count
in an output only with a degree's context around them.
"""

from __future__ import annotations

import re

from cvml.safety.fabrication.claims import Claim, _Found, _overlap

# Written forms -> (canonical id, level); "." separates the letter groups that may take a dot.
_DEGREE_FORMS: dict[str, tuple[str, str]] = {
    "Ph.D": ("phd", "doctorate"), "D.Phil": ("phd", "doctorate"), "M.D": ("md", "doctorate"),
    "J.D": ("jd", "doctorate"), "M.B.A": ("mba", "master"), "E.M.B.A": ("mba", "master"),
    "M.Sc": ("msc", "master"), "M.S": ("msc", "master"), "M.Tech": ("mtech", "master"),
    "M.E": ("meng", "master"), "M.Eng": ("meng", "master"), "M.A": ("ma", "master"), "M.C.A": ("mca", "master"),
    "M.Com": ("mcom", "master"), "M.Ed": ("med", "master"), "M.F.A": ("mfa", "master"), "M.P.H": ("mph", "master"),
    "LL.M": ("llm", "master"), "M.Phil": ("mphil", "master"), "M.Pharm": ("mpharm", "master"),
    "M.Arch": ("march", "master"), "P.G.D.M": ("pgdm", "master"), "P.G.D.B.A": ("pgdm", "master"),
    "P.G.C.E": ("pgce", "master"), "M.B.B.S": ("mbbs", "bachelor"), "B.Tech": ("btech", "bachelor"),
    "B.E": ("beng", "bachelor"), "B.Eng": ("beng", "bachelor"), "B.Sc": ("bsc", "bachelor"),
    "B.S": ("bsc", "bachelor"), "B.A": ("ba", "bachelor"), "B.Com": ("bcom", "bachelor"),
    "B.B.A": ("bba", "bachelor"), "B.C.A": ("bca", "bachelor"), "B.Ed": ("bed", "bachelor"),
    "B.F.A": ("bfa", "bachelor"), "LL.B": ("llb", "bachelor"), "B.Pharm": ("bpharm", "bachelor"),
    "B.Arch": ("barch", "bachelor"), "H.N.D": ("hnd", "diploma"), "A.A.S": ("associate", "associate"),
    "A.A": ("associate", "associate"), "A.S": ("associate", "associate"),
}
_DEGREE_BY_KEY = {form.replace(".", "").lower(): value for form, value in _DEGREE_FORMS.items()}
_ABBREVIATION = re.compile(
    r"(?<![\w.'’-])(?i:"
    + "|".join(r"\.?\s?".join(map(re.escape, form.split("."))) + r"\.?"
               for form in sorted(_DEGREE_FORMS, key=len, reverse=True))
    + r")(?![\w'’-])"
)
# Forms that are also words or other abbreviations ("MS Office", "Boston, MA", "BE", "MARCH"):
# without dots they count only in capitals, before a field ("MS in ...", "BA Marketing") or
# right after a school.
_AMBIGUOUS = frozenset({"ms", "ma", "me", "ba", "bs", "be", "md", "jd", "aa", "as", "aas", "med", "bed", "llm",
                        "emba", "march"})
_NOT_A_FIELD = frozenset("""office excel word access powerpoint outlook project visio sql teams dynamics azure
sharepoint windows exchange server paint dos""".split())
_DEGREE_CONTEXT = re.compile(
    r"[ \t]*(?:\((?i:hons?|honou?rs)\)|in\b|of\b|(?i:degree)|[,:-]?[ \t]*(?P<field>[A-Z][a-z]+))"
)
_AFTER_SCHOOL = re.compile(r"(?i)\b(?:university|college|institute|school)[ \t,]{1,3}$")  # "Marietta College BA"
_FIELDS = {
    "bachelor": [("technology", "btech"), ("engineering", "beng"), ("science", "bsc"), ("fine arts", "bfa"),
                 ("arts", "ba"), ("commerce", "bcom"), ("business administration", "bba"),
                 ("computer application", "bca"), ("education", "bed"), ("law", "llb"), ("pharmacy", "bpharm"),
                 ("architecture", "barch")],
    "master": [("technology", "mtech"), ("engineering", "meng"), ("science", "msc"), ("fine arts", "mfa"),
               ("arts", "ma"), ("commerce", "mcom"), ("business administration", "mba"),
               ("computer application", "mca"), ("education", "med"), ("law", "llm"), ("public health", "mph"),
               ("philosophy", "mphil"), ("pharmacy", "mpharm"), ("architecture", "march")],
    "doctor": [("philosophy", "phd"), ("medicine", "md"), ("jurisprudence", "jd")],
    "associate": [("applied science", "associate"), ("science", "associate"), ("arts", "associate")],
}
_LONG_DEGREE = re.compile(
    r"(?i)\b(?P<level>bachelor|master|doctor|associate)(?P<s>'s|’s|s)?(?P<degree>[ \t]+degree)?"
    r"(?:[ \t]+(?P<prep>of|in)[ \t]+(?P<field>[a-z][a-z&]*(?:[ \t]+[a-z&]+){0,3}))?"
)
_GENERIC_DEGREE = re.compile(
    r"(?i)\b(?:(?P<doctorate>doctorate|doctoral\s+degree)|(?P<pgdip>post[- ]?graduate\s+diploma|pg\s+diploma)"
    r"|(?P<diploma>diploma)|(?P<bachelor>undergraduate\s+degree)|(?P<master>post[- ]?graduate\s+degree))\b"
)
_GENERIC_LEVEL = {"doctorate": "doctorate", "pgdip": "master", "diploma": "diploma", "bachelor": "bachelor",
                  "master": "master"}


def _degrees(masked: str, lenient: bool) -> list[_Found]:
    """Degrees by canonical id; `lenient` (for inputs) takes ambiguous forms without the
    context ("BE in", "MS Computer Science") they otherwise need, and any case."""
    found = [d for m in _ABBREVIATION.finditer(masked) if (d := _abbreviation(masked, m, lenient))]
    for m in _LONG_DEGREE.finditer(masked):
        d = _long_degree(m)
        if d and not any(_overlap(d.claim.span, f.claim.span) for f in found):
            found.append(d)
    for m in _GENERIC_DEGREE.finditer(masked):
        if not any(_overlap(m.span(), f.claim.span) for f in found):
            name = m.lastgroup
            found.append(_degree(m, name, _GENERIC_LEVEL[name], generic=name != "pgdip"))
    return found


def _abbreviation(masked: str, m: re.Match, lenient: bool) -> _Found | None:
    written = m.group()
    key = re.sub(r"[.\s]", "", written).lower()
    if key not in _DEGREE_BY_KEY or not (lenient or written[0].isupper()):
        return None
    if key in _AMBIGUOUS and "." not in written.rstrip("."):  # "Ms." is no M.S.
        context = _DEGREE_CONTEXT.match(masked, m.end())
        if not written.isupper() or (context and (context.group("field") or "").lower() in _NOT_A_FIELD):
            return None
        if not (context or lenient or _AFTER_SCHOOL.search(masked, 0, m.start())):
            return None
    return _degree(m, *_DEGREE_BY_KEY[key], generic=False)


def _long_degree(m: re.Match) -> _Found | None:
    level_word = m.group("level").lower()
    field = (m.group("field") or "").lower()
    prefix, key = next(((p, k) for p, k in _FIELDS[level_word] if field.startswith(p)), ("", None))
    if key:
        level = "doctorate" if level_word == "doctor" else level_word
        return _degree(m, key, level, generic=False, end=m.start("field") + len(prefix))
    if level_word in ("doctor", "associate") and not m.group("degree"):
        return None  # "Doctor" is a job, "Associate Engineer" a title
    if level_word == "master" and not (m.group("s") or m.group("degree") or m.group("prep")):
        return None  # "Scrum Master", "master data"
    end = max(m.end(g) for g in ("level", "s", "degree") if m.group(g))
    return _degree(m, level_word, level_word, generic=True, end=end)


def _degree(m: re.Match, key: str, level: str, generic: bool, end: int | None = None) -> _Found:
    end = m.end() if end is None else end
    return _Found(Claim("degree", m.string[m.start():end], (m.start(), end), key), key=key, level=level,
                  generic=generic)


def _degree_supported(d: _Found, inputs: list[_Found]) -> bool:
    if d.generic:
        return any(i.level == d.level for i in inputs)
    return any(i.key == d.key or (i.generic and i.level == d.level) for i in inputs)
