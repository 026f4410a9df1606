"""The safety checks a `/v1/cv/rewrite` answer carries: PII leaks, fabricated facts,
protected attributes, abusive language, and prompt injection in the inputs.

The first four compare the output with what the user gave (the CV text and the job
description): personal data, facts or attributes that appear in the output but in
neither input were introduced by the model. The injection check reads the inputs. The
results go in the response (the web app can warn), the guard and the request log.

The request log also keeps, under INPUTS, the sizes of the two inputs (`input_figures`):
the log stores them as one text, and `cvml monitor` needs each one's length, and where
the first ends, to watch their drift apart.
"""

from __future__ import annotations

from typing import Any

from cvml.safety.fabrication import check_fabrication
from cvml.safety.harmful import check_harmful
from cvml.safety.leak import pii_leaks

INPUTS = "inputs"  # the checks' key of `input_figures` in the request log


def run_checks(output: str, source: str, job_description: str | None) -> dict[str, Any]:
    """{"pii_leak": {flagged, types, n_leaks}, "fabrication": {flagged, claims, n_claims},
    "protected_attributes": {...}, "abusive": {...}, "injection": {...}}."""
    leaks = pii_leaks(output, source, job_description)
    fabrication = check_fabrication(output, source, job_description)
    harmful = check_harmful(output, source, job_description).to_dict()
    harmful.pop("flagged")
    return {
        "pii_leak": {"flagged": bool(leaks), "types": sorted({leak.type for leak in leaks}), "n_leaks": len(leaks)},
        "fabrication": fabrication.to_dict(),
        **harmful,
    }


def input_figures(source: str, job_description: str | None) -> dict[str, int]:
    """{"text_chars", "text_lines", "job_description_chars"}: the raw inputs' sizes (the log
    holds `text + "\n" + job_description`, redacted; `text_lines` says where the text ends)."""
    return {
        "text_chars": len(source),
        "text_lines": source.count("\n"),
        "job_description_chars": len(job_description) if job_description else 0,
    }
