"""Normalization repairs what CV text suffers from without changing what it says."""

from cvml.curate.normalize import normalize_text


def test_mojibake_and_nfc():
    assert normalize_text("Managed cafÃ© operations") == "Managed café operations"
    assert normalize_text("Cafe\u0301 manager") == "Café manager"  # decomposed -> NFC


def test_bullets_and_whitespace():
    text = "Data Analyst\r\n•  Built   dashboards\n▪\tCut costs 20%\n\n\n\n* Led a team  "
    assert normalize_text(text) == "Data Analyst\n- Built dashboards\n- Cut costs 20%\n\n- Led a team"


def test_ascii_fast_path_keeps_text():
    assert normalize_text("Reduced churn by 12% using SQL") == "Reduced churn by 12% using SQL"
    assert normalize_text("C++ and Node.js - 5 years") == "C++ and Node.js - 5 years"
