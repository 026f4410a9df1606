"""The safety checks a `/v1/cv/rewrite` answer carries: PII leaks and fabricated facts.

Both compare the output with what the user gave (the CV text and the job description):
personal data or facts that appear in the output but in neither input were introduced
by the model. The results go in the response (the web app can warn) and the request log.
"""

from __future__ import annotations

from typing import Any

from cvml.safety.fabrication import check_fabrication
from cvml.safety.leak import pii_leaks


def run_checks(output: str, source: str, job_description: str | None) -> dict[str, Any]:
    """{"pii_leak": {flagged, types, n_leaks}, "fabrication": {flagged, claims, n_claims}}."""
    leaks = pii_leaks(output, source, job_description)
    fabrication = check_fabrication(output, source, job_description)
    return {
        "pii_leak": {"flagged": bool(leaks), "types": sorted({leak.type for leak in leaks}), "n_leaks": len(leaks)},
        "fabrication": fabrication.to_dict(),
    }
