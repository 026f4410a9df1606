"""What the input (source and job description) supports: each parser's reading of it, built
when first needed, and the rule each kind of claim is supported by.
"""

from __future__ import annotations

from functools import cached_property
from itertools import pairwise

from cvml.safety.fabrication.claims import Claim, _Found
from cvml.safety.fabrication.degrees import _degree_supported, _degrees
from cvml.safety.fabrication.masking import _mask
from cvml.safety.fabrication.organisations import _EntityIndex
from cvml.safety.fabrication.quantities import _BARE_NUMBER, _HOURS, _RANGE_JOINS, _quantities, _quantity_supported


class _Support:
    """What the input (source and job description) supports, each part built when first
    needed: most outputs make claims of only some kinds."""

    def __init__(self, source: str, job_description: str):
        self.source, self.job = source, job_description

    @cached_property
    def _masked(self) -> tuple[str, str]:
        return _mask(self.source), _mask(self.job)

    @cached_property
    def quantities(self) -> list[_Found]:
        """All the input's quantities but the job ad's durations, plus as plain numbers the
        digit runs that are years or no quantity, masked or not ("FY2019", a house
        number, the "63" of "1960-63")."""
        items = []
        for is_job, text, masked in zip((False, True), (self.source, self.job), self._masked):
            parsed = _quantities(masked, text, keep_parts=True)
            covered = [item.claim.span for item in parsed if item.claim.kind != "year"]
            items += [q for q in parsed if not (is_job and q.claim.kind == "duration")]
            items += [_Found(Claim("number", m.group(), m.span(), m.group()), float(m.group()), float(m.group()))
                      for m in _BARE_NUMBER.finditer(text) if not any(s <= m.start() < e for s, e in covered)]
        return items

    @cached_property
    def range_years(self) -> set[int]:
        """Lengths in years of the source's spelled ranges ("2015-2022", "2015 to 2022")."""
        masked = self._masked[0]
        years = [q for q in _quantities(masked, self.source) if q.claim.kind == "year"]
        return {int(b.raw - a.raw) for a, b in pairwise(years)
                if 0 < b.raw - a.raw < 60 and masked[a.claim.span[1]:b.claim.span[0]].strip() in (*_RANGE_JOINS, "/")}

    @cached_property
    def degrees(self) -> list[_Found]:
        return [d for masked in self._masked for d in _degrees(masked, lenient=True)]

    @cached_property
    def entities(self) -> _EntityIndex:
        return _EntityIndex(self.source + "\n" + self.job)

    def holds(self, item: _Found) -> bool:
        kind = item.claim.kind
        if kind == "degree":
            return _degree_supported(item, self.degrees)
        if kind in ("employer", "school"):
            return self.entities.supports(item.tokens) or bool(item.rest) and self.entities.supports(item.rest)
        if kind == "duration" and self._spans_a_range(item):
            return True
        return any(_quantity_supported(item, u) for u in self.quantities)

    def _spans_a_range(self, item: _Found) -> bool:
        if item.unit < _HOURS["month"]:
            return False  # "20 hours" is no length of employment
        years = item.value / _HOURS["year"]
        return any(abs(years - d) <= 1 or (item.bound == "lower" and d >= years) for d in self.range_years)
