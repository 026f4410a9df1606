"""`cvml bench --compare a.json b.json`: the difference of two saved reports, metric by
metric, with the same noise-aware intervals the gates use where both reports hold samples.
"a" is the reference (baseline), "b" the one compared to it."""

from __future__ import annotations

from typing import Any

from cvml.bench.fingerprint import differences
from cvml.bench.gates import NoEvidence, change, lookup, numeric_paths
from cvml.bench.report import WORKLOAD_KEYS

# Resamples per metric: a comparison shows dozens of metrics, each an indication, not a verdict.
COMPARE_RESAMPLES = 1000


def compare_reports(a: dict[str, Any], b: dict[str, Any], *, confidence: float = 0.95) -> dict[str, Any]:
    """Every metric both reports have: a, b, relative change, and when samples allow, the
    interval of the change and whether it excludes "no change".

    Returns:
        {"a", "b" (name/model/created_at), "fingerprint_differences", "workload_differences", "rows"}.
    """
    rows = []
    for metric in numeric_paths(a.get("metrics", {})):
        found, vb = lookup(b.get("metrics", {}), metric)
        if not found:
            continue
        va = lookup(a["metrics"], metric)[1]
        row: dict[str, Any] = {"metric": metric, "a": va, "b": vb, "change": (vb / va - 1) if va and vb is not None else None}
        try:
            moved = change(metric, b, a, confidence=confidence, n_resamples=COMPARE_RESAMPLES)
        except NoEvidence:
            pass
        else:
            iv = moved.interval
            neutral = 1.0 if moved.quantity == "ratio" else 0.0
            row.update(
                quantity=moved.quantity, estimate=iv.estimate, ci_low=iv.low, ci_high=iv.high, confidence=iv.confidence,
                significant=not iv.low <= neutral <= iv.high,
            )
        rows.append(row)
    cfg_a, cfg_b = a.get("config") or {}, b.get("config") or {}
    return {
        "a": _about(a),
        "b": _about(b),
        "fingerprint_differences": differences(a.get("fingerprint"), b.get("fingerprint")),
        "workload_differences": [
            f"{k}: {cfg_a.get(k)!r} ≠ {cfg_b.get(k)!r}" for k in WORKLOAD_KEYS if cfg_a.get(k) != cfg_b.get(k)
        ],
        "rows": rows,
    }


def _about(report: dict) -> dict[str, Any]:
    return {
        "name": report.get("name"),
        "model": (report.get("model") or {}).get("ref"),
        "created_at": report.get("created_at"),
        "verdict": report.get("verdict"),
    }
