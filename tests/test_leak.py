"""PII leaks: personal data in an output that its input lacked is reported; data the
input held, in any format, and placeholders are not."""

from __future__ import annotations

import pytest

from cvml.safety.leak import pii_leaks
from cvml.safety.pii import PiiRedactor


def leaked(output: str, source: str, job: str | None = None, **kw) -> list[tuple[str, str]]:
    return [(s.type, s.text) for s in pii_leaks(output, source, job, **kw)]


@pytest.mark.parametrize("output, expected", [
    ("Reach me at bob.smith@evil.com", [("EMAIL", "bob.smith@evil.com")]),
    ("Call (415) 555-0132 today", [("PHONE", "(415) 555-0132")]),
    ("Jane Doe — Data Analyst\nBuilt dashboards", [("NAME", "Jane Doe")]),
    ("Portfolio: https://github.com/janedoe", [("URL", "https://github.com/janedoe")]),
    ("Date of birth: 12/03/1990", [("DOB", "12/03/1990")]),
])
def test_pii_the_input_lacks_is_a_leak(output, expected):
    assert leaked(output, "Data analyst who built dashboards in SQL") == expected


@pytest.mark.parametrize("output, source", [
    ("Jane Doe — Data Analyst, jane@x.io", "JANE DOE\nEmail: Jane@X.io"),
    ("Call +44 7700 900123", "Mobile: 07700 900123"),  # same number, national format
    ("Call 415-555-0132", "Phone: (415) 555 0132"),
    ("See https://www.linkedin.com/in/jane-doe/", "linkedin.com/in/jane-doe"),
    ("Jane Doe led the analytics team", "Led the analytics team. Referee: ask Jane Doe."),  # name in any position
])
def test_pii_the_input_holds_is_no_leak(output, source):
    assert leaked(output, source) == []


def test_placeholders_are_no_pii_but_real_values_beside_them_are():
    source = "<NAME_1> — Analyst\n<EMAIL_1> | <PHONE_1>"
    assert leaked("<NAME_1>, Analyst. Contact: <EMAIL_1>", source) == []
    assert leaked("Contact <EMAIL_1> or bob@evil.com", source) == [("EMAIL", "bob@evil.com")]


def test_the_job_description_counts_as_input():
    job = "Apply to careers@acme.com"
    assert leaked("Sent my CV to careers@acme.com", "Analyst", job) == []


def test_spans_point_into_the_output_and_a_redactor_chooses_the_types():
    output = "Jane Doe — Analyst, jane@x.io, (415) 555-0132"
    spans = pii_leaks(output, "Analyst")
    assert [output[s.start:s.end] for s in spans] == [s.text for s in spans]
    assert {s.type for s in spans} == {"NAME", "EMAIL", "PHONE"}
    assert leaked(output, "Analyst", redactor=PiiRedactor(types=["EMAIL"])) == [("EMAIL", "jane@x.io")]
