"""The bench report: report.json (schema `cvml.bench/1`), report.md for a PR comment,
junit.xml for CI test views, and the PNGs.

report.json layout:
- `metrics`: the tree gates address by dotted path — `load_s`, `perf.<level>.<metric>`,
  `resources.*`, `quality.*`, `bias.*`;
- `samples`: the raw evidence relative gates resample — `samples.perf.<level>` holds one
  dict per trial (per-trial figures plus per-request TTFT/ITL/e2e lists), and
  `samples.quality` one dict per eval example (`id` plus every quality metric);
- `fingerprint`, `config` (the workload), `pairing` (trials of reports sharing a run_id
  were interleaved), `baseline` (what was compared against, and how it differs),
  `gates` (every bound with its evidence), `warnings`, `verdict`.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cvml.bench.fingerprint import COMPARED, differences
from cvml.bench.perf import level_metrics
from cvml.errors import ConfigError

SCHEMA = "cvml.bench/1"
# Settings that must match for two reports' speed figures to compare.
WORKLOAD_KEYS = ("workload_sha256", "max_new_tokens", "ignore_eos", "requests_per_level", "engine")


def build_report(
    *,
    name: str,
    role: str,
    model: dict[str, Any],
    fingerprint: dict[str, Any],
    config: dict[str, Any],
    pairing: dict[str, Any],
    perf: dict[str, list[dict]] | None = None,
    load_s: float | None = None,
    resources: dict[str, Any] | None = None,
    quality: Any = None,
    safety: dict[str, Any] | None = None,
    bias: dict[str, Any] | None = None,
    warnings: list[str] | None = None,
) -> dict[str, Any]:
    """Assemble one model's report (gates and verdict are added by `attach_gates`).

    Args:
        perf: {level: [trial sample, ...]} from `sweep.measure_perf`.
        quality: a `cvml.evaluation.QualityResult`.
        safety: fabrication, PII-leak and harmful rates under the bench's grounding (and
            `*_off` without it).
        bias: the dict `cvml.evaluation.run_bias_probe` returns.
    """
    metrics: dict[str, Any] = {}
    if load_s is not None:
        metrics["load_s"] = round(load_s, 4)
    if perf:
        metrics["perf"] = {level: level_metrics(trials) for level, trials in perf.items()}
    if resources:
        metrics["resources"] = resources
    if quality is not None:
        metrics["quality"] = quality.metrics
    if safety:
        metrics["safety"] = safety
    if bias is not None:
        metrics["bias"] = numeric_tree(bias)
    detail = quality.to_dict() if quality is not None else None
    if detail is not None:
        detail.pop("per_example")
        detail.pop("metrics")
    return {
        "schema": SCHEMA,
        "name": name,
        "role": role,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": model,
        "fingerprint": fingerprint,
        "config": config,
        "pairing": pairing,
        "metrics": metrics,
        "samples": {"perf": perf or {}, "quality": quality.per_example if quality is not None else []},
        "quality": detail,
        "bias": bias,
        "baseline": None,
        "gates": [],
        "warnings": list(warnings or []),
        "verdict": None,
    }


def numeric_tree(data: dict[str, Any]) -> dict[str, Any]:
    """The numeric leaves of a nested dict (lists and text dropped), for `metrics`."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            sub = numeric_tree(value)
            if sub:
                out[key] = sub
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = value
    return out


def compare_to_baseline(report: dict, baseline: dict, source: str) -> list[str]:
    """Record in `report["baseline"]` what it is compared with; return loud warnings for
    a different machine/stack or workload."""
    fp = differences(report.get("fingerprint"), baseline.get("fingerprint"))
    cfg_a, cfg_b = report.get("config") or {}, baseline.get("config") or {}
    workload = [f"{k}: {cfg_a.get(k)!r} ≠ {cfg_b.get(k)!r}" for k in WORKLOAD_KEYS if cfg_a.get(k) != cfg_b.get(k)]
    report["baseline"] = {
        "source": source,
        "model": (baseline.get("model") or {}).get("ref"),
        "created_at": baseline.get("created_at"),
        "fingerprint_differences": fp,
        "workload_differences": workload,
        "fingerprint": baseline.get("fingerprint"),
        "metrics": baseline.get("metrics"),
    }
    warnings = []
    if fp:
        warnings.append(
            "FINGERPRINT MISMATCH: the baseline ran on a different machine or software stack, so speed "
            "changes may come from the machine, not the model or code (" + "; ".join(fp) + ")"
        )
    if workload:
        warnings.append("WORKLOAD MISMATCH: the baseline measured a different workload (" + "; ".join(workload) + ")")
    report["warnings"] += warnings
    return warnings


def attach_gates(report: dict, results: list) -> None:
    """Store gate results and the verdict: fail when any bound failed."""
    report["gates"] = [g.to_dict() for g in results]
    report["verdict"] = "fail" if any(g.failed for g in results) else "pass"


def load_report(path: str | Path) -> dict[str, Any]:
    """Read a saved report.json.

    Raises:
        ConfigError: missing, not JSON, or not a cvml bench report of a schema this version reads.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "report.json"
    if not path.is_file():
        raise ConfigError(f"bench report not found: {path}", hint="Pass the report.json a previous `cvml bench` wrote.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc}") from None
    schema = data.get("schema") if isinstance(data, dict) else None
    if schema != SCHEMA:
        raise ConfigError(
            f"{path} is not a {SCHEMA} report (schema: {schema!r})",
            hint="Re-run `cvml bench` with this version to produce a comparable report.",
        )
    return data


def write_report(report: dict, out_dir: Path, baseline: dict | None = None) -> dict[str, str]:
    """Write report.json, report.md, junit.xml and the PNGs into `out_dir`; return their paths."""
    from cvml.bench.plots import plot_latency_cdf, plot_throughput

    out_dir.mkdir(parents=True, exist_ok=True)
    files = {
        "report_json": out_dir / "report.json",
        "report_md": out_dir / "report.md",
        "junit": out_dir / "junit.xml",
    }
    perf = report["samples"]["perf"]
    base_perf = (baseline or {}).get("samples", {}).get("perf") or None
    if perf:
        files["latency_cdf"] = plot_latency_cdf(perf, out_dir / "latency_cdf.png", base_perf)
        files["throughput"] = plot_throughput(perf, out_dir / "throughput.png", base_perf)
    report["files"] = {k: str(v) for k, v in files.items()}
    files["report_json"].write_text(json.dumps(report, indent=1, default=str) + "\n", encoding="utf-8")
    files["report_md"].write_text(render_markdown(report), encoding="utf-8")
    files["junit"].write_text(render_junit(report), encoding="utf-8")
    return report["files"]


# --------------------------------------------------------------------------- markdown


def render_markdown(report: dict) -> str:
    """The report as Markdown: verdict, warnings, gate table, perf, quality, fingerprint."""
    verdict = {"pass": "✅ PASS", "fail": "❌ FAIL"}.get(report.get("verdict"), "no verdict")
    model = report.get("model") or {}
    lines = [
        f"## cvml bench · {report['name']} · {verdict}",
        "",
        f"Model `{model.get('ref')}` · {report['fingerprint'].get('device')} · {report['fingerprint'].get('dtype')} · "
        f"{report['created_at']} · schema `{report['schema']}`",
        "",
    ]
    lines += [f"> ⚠️ **{w}**" for w in report.get("warnings", [])] + ([""] if report.get("warnings") else [])
    lines += _gate_table(report)
    lines += _perf_table(report)
    lines += _quality_table(report)
    lines += _safety_table(report)
    lines += _bias_lines(report)
    lines += _fingerprint_table(report)
    return "\n".join(lines) + "\n"


def _gate_table(report: dict) -> list[str]:
    gates = report.get("gates") or []
    if not gates:
        return ["No gates configured (`bench.gates` in the recipe).", ""]
    rows = ["### Gates", "", "| metric | value | baseline | change | gate | verdict |", "|---|---:|---:|---|---|---|"]
    icon = {"pass": "✅ pass", "fail": "❌ **FAIL**", "skipped": "⏭️ skipped"}
    base_metrics = (report.get("baseline") or {}).get("metrics") or {}
    for g in gates:
        base = g["baseline"] if g["baseline"] is not None else _leaf(base_metrics, g["metric"])
        rows.append(
            f"| `{g['metric']}` | {_fmt(g['metric'], g['value'])} | {_fmt(g['metric'], base)} | {_change(g, base)} "
            f"| {_bound(g)} | {icon[g['verdict']]} |"
        )
    failed = [g for g in gates if g["verdict"] == "fail"]
    if failed:
        rows += ["", *[f"- ❌ {g['message']}" for g in failed]]
    return rows + [""]


def _change(g: dict, base: float | None) -> str:
    if g["kind"] in ("max_drop", "max_rise") and g["ci_low"] is not None:
        if g["method"] == "paired-examples":
            return f"{g['observed']:+.4g} [{g['ci_low']:+.4g}, {g['ci_high']:+.4g}]"
        return f"{g['observed'] - 1:+.1%} [{g['ci_low'] - 1:+.1%}, {g['ci_high'] - 1:+.1%}]"
    if g["value"] is not None and base:
        return f"{g['value'] / base - 1:+.1%}"
    return "–"


def _bound(g: dict) -> str:
    return {
        "max": f"≤ {_fmt(g['metric'], g['bound'])}",
        "min": f"≥ {_fmt(g['metric'], g['bound'])}",
        "max_drop": f"drop ≤ {g['bound']:.0%} ({g['confidence'] or 0:.0%} CI)" if g["confidence"] else f"drop ≤ {g['bound']:.0%}",
        "max_rise": f"rise ≤ {g['bound']:.0%} ({g['confidence'] or 0:.0%} CI)" if g["confidence"] else f"rise ≤ {g['bound']:.0%}",
    }[g["kind"]]


def _perf_table(report: dict) -> list[str]:
    perf = report["metrics"].get("perf")
    lines = []
    if perf:
        cfg = report.get("config") or {}
        lines += [
            f"### Performance ({cfg.get('trials')} trials × {cfg.get('requests_per_level')} requests per level, "
            f"{cfg.get('max_new_tokens')} new tokens each)",
            "",
            "| level | req/s | out tok/s | TTFT p50 / p95 | ITL p50 / p95 | e2e p50 / p95 / p99 | errors |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for level, m in perf.items():
            t = lambda k: _seconds(m.get(k))  # noqa: E731
            lines.append(
                f"| {level} | {m['requests_per_s']:.2f} | {m['output_tokens_per_s']:,.1f} | {t('ttft_p50_s')} / {t('ttft_p95_s')} "
                f"| {t('itl_p50_s')} / {t('itl_p95_s')} | {t('e2e_p50_s')} / {t('e2e_p95_s')} / {t('e2e_p99_s')} "
                f"| {m['errors']}/{m['requests']} |"
            )
        lines.append("")
    extras = []
    if "load_s" in report["metrics"]:
        extras.append(f"cold start (model load) {report['metrics']['load_s']:.2f} s")
    for key, value in (report["metrics"].get("resources") or {}).items():
        extras.append(f"{key.replace('_mb', '')} {value:,.0f} MB")
    if extras:
        lines += [" · ".join(extras), ""]
    return lines


def _quality_table(report: dict) -> list[str]:
    quality = report["metrics"].get("quality")
    if not quality:
        return []
    base = ((report.get("baseline") or {}).get("metrics") or {}).get("quality") or {}
    lines = [f"### Quality ({quality.get('n')} eval examples)", "", "| metric | value | baseline |", "|---|---:|---:|"]
    for key, value in quality.items():
        if key != "n":
            lines.append(f"| {key} | {_fmt(key, value)} | {_fmt(key, base.get(key))} |")
    return lines + [""]


def _safety_table(report: dict) -> list[str]:
    safety = report["metrics"].get("safety")
    if not safety:
        return []
    grounding = (report.get("config") or {}).get("grounding") or "off"
    rates = [k for k in safety if not k.endswith("_off")]
    compared = any(f"{k}_off" in safety for k in rates)
    head = f"| rate | grounding {grounding} |" + (" grounding off |" if compared else "")
    lines = ["### Safety", "", head, "|---|---:|" + ("---:|" if compared else "")]
    for key in rates:
        off = f" {_fmt(key, safety.get(f'{key}_off'))} |" if compared else ""
        lines.append(f"| {key} | {_fmt(key, safety[key])} |{off}")
    return lines + [""]


def _bias_lines(report: dict) -> list[str]:
    bias = report.get("bias")
    if not bias:
        return []
    impact = bias.get("impact") or {}
    flagged = ", ".join(impact.get("flagged_groups") or []) or "none"
    lines = [
        f"### Bias probe ({bias.get('n_cases')} counterfactual cases)",
        "",
        f"Verdict: {'⚠️ flagged' if bias.get('flagged') else 'not flagged'} · lowest impact ratio "
        f"{_fmt('ratio', impact.get('min_ratio'))} (four-fifths rule; groups under 0.8: {flagged})",
        "",
        "| metric | largest gap | between |",
        "|---|---:|---|",
    ]
    for metric, gap in (bias.get("gaps") or {}).items():
        lines.append(f"| {metric} | {_fmt(metric, gap.get('gap'))} | {gap.get('max_group')} vs {gap.get('min_group')} |")
    return lines + [""]


def _fingerprint_table(report: dict) -> list[str]:
    fp = report["fingerprint"]
    base = (report.get("baseline") or {}).get("fingerprint") or {}
    lines = ["<details><summary>Fingerprint</summary>", "", "| | this run | baseline |", "|---|---|---|"]
    for key, value in fp.items():
        mark = " ⚠️" if base and base.get(key) != value and key in COMPARED else ""
        lines.append(f"| {key}{mark} | {value} | {base.get(key, '–') if base else '–'} |")
    return lines + ["", "</details>"]


def _leaf(tree: dict, dotted: str) -> float | None:
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node if isinstance(node, (int, float)) and not isinstance(node, bool) else None


def _fmt(name: str, value: Any) -> str:
    if value is None:
        return "–"
    if not isinstance(value, (int, float)):
        return str(value)
    if name.endswith("_s") and not name.endswith("_per_s"):
        return _seconds(value)
    if name.endswith("_rate"):
        return f"{value:.1%}"
    if isinstance(value, int) or abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.4g}"


def _seconds(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"


# --------------------------------------------------------------------------- junit


def render_junit(report: dict) -> str:
    """One testcase per gate bound; a failure carries bound, observed value and interval."""
    gates = report.get("gates") or []
    suites = ET.Element("testsuites")
    suite = ET.SubElement(
        suites, "testsuite", name=f"cvml bench {report['name']}", tests=str(len(gates)),
        failures=str(sum(g["verdict"] == "fail" for g in gates)),
        skipped=str(sum(g["verdict"] == "skipped" for g in gates)), errors="0", timestamp=report["created_at"],
    )
    props = ET.SubElement(suite, "properties")
    for key in ("cpu_model", "device", "dtype", "torch", "transformers"):
        ET.SubElement(props, "property", name=key, value=str(report["fingerprint"].get(key)))
    ET.SubElement(props, "property", name="model", value=str((report.get("model") or {}).get("ref")))
    for g in gates:
        case = ET.SubElement(suite, "testcase", classname=f"cvml.bench.{report['name']}", name=g["name"], time="0")
        if g["verdict"] == "fail":
            failure = ET.SubElement(case, "failure", message=g["message"], type="regression")
            failure.text = json.dumps({k: g[k] for k in ("value", "baseline", "observed", "threshold", "ci_low", "ci_high", "confidence", "method")})
        elif g["verdict"] == "skipped":
            ET.SubElement(case, "skipped", message=g["message"])
        else:
            ET.SubElement(case, "system-out").text = g["message"]
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"
