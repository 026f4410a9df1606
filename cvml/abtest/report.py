"""Reports of an A/B analysis: report.json for machines, report.md for people, PNGs to look at.

- `differences.png`: each metric's difference B - A with its interval, one panel per
  metric (each on its own scale), coloured by what the interval says;
- `sequential.png` (online): the confidence sequence of the primary metric over the
  observations, with the fixed-horizon interval at the last look, and the always-valid
  p-value against α below it;
- `pairs.jsonl` (offline): every example's outputs and metric values for A and B.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from cvml.abtest.decision import Comparison, Decision
from cvml.abtest.offline import OfflineResult
from cvml.abtest.online import OnlineResult
from cvml.manifest import build_manifest, write_manifest

_GOOD, _BAD, _NEUTRAL = "#2e7d32", "#c62828", "#616161"


def default_folder(template: str, name: str) -> Path:
    """The report folder: `template` (e.g. abtest/{name}) with a file-system-safe name."""
    return Path(template.format(name=re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "abtest"))


def offline_name(a: str, b: str) -> str:
    """The folder name of an offline A/B: offline-<a>-vs-<b>, each ref's last path part."""
    return f"offline-{Path(a).name or a}-vs-{Path(b).name or b}"


def write_report(
    result: OfflineResult | OnlineResult, folder: str | Path, recipe: dict[str, Any] | None = None
) -> dict[str, str]:
    """Write report.json, report.md, the PNGs and manifest.json into `folder`.

    Returns:
        The written files by role (json, markdown, differences, sequential, pairs, manifest).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    payload = result.to_dict()
    files: dict[str, str] = {}
    files["json"] = _write(folder / "report.json", json.dumps(payload, indent=2, default=str) + "\n")
    files["differences"] = str(plot_differences(result.comparisons, result.decision, folder / "differences.png"))
    if isinstance(result, OnlineResult) and result.sequential is not None:
        primary = result.comparisons[result.decision.primary]
        files["sequential"] = str(plot_sequential(payload["sequential"], primary, folder / "sequential.png"))
    if isinstance(result, OfflineResult):
        lines = "".join(json.dumps(pair, default=str) + "\n" for pair in result.pairs)
        files["pairs"] = _write(folder / "pairs.jsonl", lines)
    files["markdown"] = _write(folder / "report.md", render_markdown(result, files))
    inputs = {"data": result.data} if isinstance(result, OfflineResult) and Path(result.data).exists() else None
    manifest = build_manifest(
        f"abtest-{payload['kind']}",
        inputs=inputs,
        recipe=recipe,
        seed=result.settings.get("seed") if isinstance(result, OfflineResult) else None,
        extra={"decision": result.decision.to_dict(), "files": {k: Path(v).name for k, v in files.items()}},
    )
    files["manifest"] = str(write_manifest(folder, manifest))
    return files


def render_markdown(result: OfflineResult | OnlineResult, files: dict[str, str]) -> str:
    """The report for people: verdict and reasons first, then the metric table and guardrails."""
    decision = result.decision
    lines: list[str] = []
    if isinstance(result, OfflineResult):
        lines += [
            f"# Offline A/B: {result.a['requested']} vs {result.b['requested']}",
            "",
            f"- A (control): {_model(result.a)}",
            f"- B (candidate): {_model(result.b)}",
            f"- Data: `{result.data}`, {result.n} examples, greedy decoding, "
            f"max_new_tokens={result.settings.get('max_new_tokens')}",
            f"- Grounding: A {result.safety.get('a', {}).get('grounding', 'off')}, "
            f"B {result.safety.get('b', {}).get('grounding', 'off')}",
        ]
    else:
        exp = result.experiment
        lines += [
            f"# Online A/B: {exp.name} ({exp.status})",
            "",
            f"- A (control): `{exp.a_ref}` (`{exp.a_version}` at start)",
            f"- B (candidate): `{exp.b_ref}` (`{exp.b_version}` at start)",
            f"- Split {exp.split}; requests a={result.requests['a']}, b={result.requests['b']}",
            f"- Sample-ratio check: units a={result.units['a']}, b={result.units['b']}, chi-square "
            f"p = {result.srm['pvalue']:.3g} → {'**MISMATCH**' if result.srm['mismatch'] else 'ok'}",
        ]
    lines += ["", f"## Decision: **{decision.verdict}**", ""]
    lines += [f"- {reason}" for reason in decision.reasons]
    if decision.required_n is not None and decision.verdict == "INCONCLUSIVE":
        if isinstance(result, OfflineResult):
            have = f"{decision.required_n} examples; this analysis has {decision.n}"
        else:
            have = f"{decision.required_n} observations in both variants together; the smaller variant has {decision.n}"
        lines.append(f"- To detect the MDE ({decision.mde:g}) with the planned power it would take about {have}.")
    lines += ["", "## Metrics (B − A)", "", _metric_table(result.comparisons, paired=isinstance(result, OfflineResult))]
    if isinstance(result, OfflineResult) and result.safety:
        lines += _safety_lines(result.safety)
    if decision.guardrails:
        lines += ["", "## Guardrails", "", "| metric | tolerance | harm lower bound | status |", "|---|---|---|---|"]
        for g in decision.guardrails:
            bound = "—" if g.harm_lower_bound is None else _num(g.harm_lower_bound)
            lines.append(f"| {g.metric} | {g.tolerance:g} | {bound} | {'ok' if g.passed else '**violated**'} |")
    primary = result.comparisons.get(decision.primary)
    if isinstance(result, OnlineResult) and primary is not None and "fixed_horizon" in primary.extra:
        fixed = primary.extra["fixed_horizon"]
        lines += [
            "",
            "## Sequential vs fixed-horizon (primary metric)",
            "",
            f"- {primary.test}: always-valid interval [{_num(primary.low)}, {_num(primary.high)}], "
            f"always-valid p = {_num(primary.pvalue)} (safe to read at every look)",
            f"- fixed-horizon {fixed['test']}: [{_num(fixed['low'])}, {_num(fixed['high'])}], p = {_num(fixed['pvalue'])} "
            "(valid only if this is the one planned look)",
        ]
    pictures = [f"![{role}]({Path(files[role]).name})" for role in ("differences", "sequential") if role in files]
    if pictures:
        lines += ["", "## Plots", "", *pictures]
    return "\n".join(lines) + "\n"


def _safety_lines(safety: dict) -> list[str]:
    """Each arm's safety rates under its grounding, and with grounding off where it was on."""
    lines = ["", "## Safety by grounding", "", "| arm | grounding | fabrication | PII leak | harmful |", "|---|---|---:|---:|---:|"]
    rates = ("fabrication_rate", "pii_leak_rate", "harmful_rate")
    for arm, values in safety.items():
        cells = " | ".join(_rate(values.get(r)) for r in rates)
        lines.append(f"| {arm.upper()} | {values['grounding']} | {cells} |")
        if "off" in values:
            cells = " | ".join(_rate(values["off"].get(r)) for r in rates)
            lines.append(f"| {arm.upper()} | off | {cells} |")
    return lines


def _rate(value) -> str:
    return "—" if value is None else f"{value:.1%}"


def plot_differences(comparisons: dict[str, Comparison], decision: Decision, path: Path) -> Path:
    """One panel per metric: B - A with its interval, 0 marked, the MDE on the primary's panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [c for c in comparisons.values() if c.n > 0 and math.isfinite(c.diff)]
    fig, axes = plt.subplots(len(shown) or 1, 1, figsize=(7, 0.75 * max(len(shown), 1) + 0.8), squeeze=False)
    for ax, comparison in zip(axes[:, 0], shown):
        _, low, high = comparison.gain()
        color = _GOOD if low > 0 else _BAD if high < 0 else _NEUTRAL
        left = comparison.diff - comparison.low if math.isfinite(comparison.low) else 0
        right = comparison.high - comparison.diff if math.isfinite(comparison.high) else 0
        ax.errorbar([comparison.diff], [0], xerr=[[left], [right]], fmt="o", color=color, capsize=4)
        ax.axvline(0, color="black", linewidth=0.8)
        if comparison.metric == decision.primary:
            sign = 1 if comparison.higher_is_better else -1
            ax.axvline(sign * decision.mde, color=_GOOD, linestyle="--", linewidth=0.8)
        ax.set_yticks([0])
        primary = "\n(primary; dashed: MDE)" if comparison.metric == decision.primary else ""
        ax.set_yticklabels([f"{comparison.metric}{primary}"])
        ax.tick_params(axis="x", labelsize=7)
        ax.set_ylim(-1, 1)
    axes[0, 0].set_title(f"B − A with confidence intervals — {decision.verdict}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_sequential(path_data: dict[str, Any], primary: Comparison, path: Path) -> Path:
    """The primary metric's confidence sequence and always-valid p-value over the observations."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    def column(key: str) -> np.ndarray:
        return np.array([np.nan if v is None else v for v in path_data[key]], dtype=float)

    n, estimate, low, high, pvalue = (column(k) for k in ("n", "estimate", "low", "high", "pvalue"))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 5.5), sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    top.plot(n, estimate, color="black", linewidth=1, label="B − A")
    top.fill_between(n, low, high, color="#1565c0", alpha=0.25, label=f"{path_data['method']} (always valid)")
    top.axhline(0, color="black", linewidth=0.8)
    fixed = primary.extra.get("fixed_horizon", {})
    if fixed.get("low") is not None and fixed.get("high") is not None and len(n):
        top.errorbar(
            [n[-1]], [fixed["diff"]], yerr=[[fixed["diff"] - fixed["low"]], [fixed["high"] - fixed["diff"]]],
            fmt="s", color="#ef6c00", capsize=4, label="fixed-horizon",
        )  # fmt: skip
    top.set_ylabel(primary.metric)
    top.legend(fontsize=8, loc="upper right")
    top.set_title(f"{primary.metric}: sequential test over the experiment", fontsize=10)
    bottom.plot(n, pvalue, color="#1565c0")
    bottom.axhline(path_data["alpha"], color=_BAD, linestyle="--", linewidth=0.8, label="α")
    bottom.set_yscale("log")
    bottom.set_ylabel("always-valid p")
    bottom.set_xlabel("observations (both variants)")
    bottom.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _model(info: dict[str, Any]) -> str:
    """`cv@3` at `/path`, or just the path for an unregistered folder."""
    return f"`{info['ref']}`" + (f" at `{info['path']}`" if info["path"] != info["ref"] else "")


def _metric_table(comparisons: dict[str, Comparison], paired: bool) -> str:
    head = "| metric | A | B | B − A | interval | p (test) |" + (" win/tie/loss |" if paired else " n a/b |")
    rows = [head, "|---|---|---|---|---|---|---|"]
    for c in comparisons.values():
        if c.n == 0:
            continue
        tail = f" {c.wins}/{c.ties}/{c.losses} |" if paired else f" {c.n_a}/{c.n_b} |"
        rows.append(
            f"| {c.metric} | {_num(c.mean_a)} | {_num(c.mean_b)} | {_num(c.diff, signed=True)} | "
            f"[{_num(c.low, signed=True)}, {_num(c.high, signed=True)}] | {_num(c.pvalue)} ({c.test}) |{tail}"
        )
    return "\n".join(rows)


def _num(value: float | None, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if math.isinf(value):
        return "∞" if value > 0 else "−∞"
    return f"{value:+.4g}" if signed else f"{value:.4g}"


def _write(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)
