"""The report folder: report.json (schema `cvml.monitor/1`), report.html (self-contained),
the PNGs beside it, and manifest.json (what made it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cvml.manifest import build_manifest, write_manifest
from cvml.monitor.api import MonitorResult
from cvml.monitor.html import render
from cvml.monitor.plots import distributions_png, latency_png, quality_png


def default_folder(template: str, result: MonitorResult) -> Path:
    """`monitor.output` with {name} = the model's name (or "requests")."""
    return Path(template.format(name=result.model.name if result.model else "requests"))


def write_report(result: MonitorResult, folder: str | Path, recipe: dict[str, Any] | None = None) -> dict[str, str]:
    """Write the report folder; returns the path of each file written."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    report = result.to_dict()
    images: dict[str, bytes] = {}
    if result.profiles is not None:
        drifted = {f.name: f.drifted for f in result.drift.features}
        images["distributions"] = distributions_png(*result.profiles, drifted)
    over_time = result.quality.over_time
    images["quality_over_time"] = quality_png(over_time)
    images["latency"] = latency_png(over_time)
    files = {"json": str(out / "report.json"), "html": str(out / "report.html")}
    for name, data in images.items():
        path = out / f"{name}.png"
        path.write_bytes(data)
        files[name] = str(path)
    report["files"] = {key: Path(value).name for key, value in files.items()}
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    (out / "report.html").write_text(render(report, images), encoding="utf-8")
    inputs = {}
    if result.reference.kind == "training" and result.model is not None and result.model.training_data:
        inputs["reference"] = result.model.training_data
    manifest = build_manifest(
        "monitor",
        inputs=inputs,
        recipe=recipe,
        extra={
            "log": result.log,
            "endpoint": result.endpoint,
            "model": result.model.ref if result.model else None,
            "window": report["window"],
            "reference": report["reference"],
            "verdict": report["verdict"],
        },
    )
    files["manifest"] = str(write_manifest(out, manifest))
    return files
