"""What `cvml quantize` and `cvml export` share once they have measured a model made from
another: the report's verdict, and registering the new model as a child of its source."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

ROLES = {"train": "calibration", "validation": "validation"}  # manifest input -> registry dataset role


class GatedReport:
    """For a report dataclass with a `gate` ({"passed": bool, ...}): its verdict, and the dict
    written as its JSON report."""

    gate: dict[str, Any]

    @property
    def passed(self) -> bool:
        return bool(self.gate["passed"])

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}


def register_child(result, ref, manifest: dict[str, Any], spec, registry, *, kind: str, section: str, measured: str,
                   report: str, metadata: dict[str, Any], reason: str) -> tuple[str | None, str | None]:
    """Registers `result.output_dir` as a `kind` child of `ref`; returns (version ref, None),
    or (None, why not): registration off in the recipe's `section`, the perplexity guard
    failed, or the source is not a registered version. `measured` names the perplexity
    entry of the new model ("quantized", "exported")."""
    if not spec.register_model:
        return None, f"{section}.register_model is false"
    if not result.passed:
        return None, f"perplexity rose by {result.perplexity['increase']:.1%} (> {spec.max_ppl_increase:.1%})"
    if ref.version is None:
        return None, "the source model is not registered"
    version = registry.register(
        result.output_dir,
        name=ref.name,
        kind=kind,
        parent=ref.ref,
        datasets=[{"path": v["path"], "sha256": v["sha256"], "role": ROLES[k]} for k, v in manifest["inputs"].items() if k in ROLES],
        metadata={
            **metadata,
            "ppl_source": result.perplexity["source"]["ppl"],
            f"ppl_{measured}": result.perplexity[measured]["ppl"],
            "ppl_increase": result.perplexity["increase"],
            "size_ratio_vs_fp16": result.size["ratio_vs_fp16"],
            "report": str(Path(result.output_dir) / report),
        },
        reason=reason,
    )
    return version.ref, None
