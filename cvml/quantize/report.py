"""quantize_report.json (the result, for machines), quantize_report.md (for people), and the
final manifest.json (what made the folder, with the measured cost)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

REPORT_JSON = "quantize_report.json"
REPORT_MD = "quantize_report.md"
QUALITY_ROWS = ("chrf", "rouge_l", "keyword_coverage", "format_ok_rate", "fabrication_rate", "pii_leak_rate", "empty_rate")
MD_SAMPLES = 6


def write_report(result, manifest: dict[str, Any]) -> None:
    """Write both reports into the output folder and complete its manifest."""
    from cvml.manifest import write_manifest

    out = Path(result.output_dir)
    result.files = {"report_json": str(out / REPORT_JSON), "report_md": str(out / REPORT_MD), "manifest": str(out / "manifest.json")}
    payload = result.as_dict()
    (out / REPORT_JSON).write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
    (out / REPORT_MD).write_text(render_markdown(payload), encoding="utf-8")
    manifest["metrics"] = {
        "ppl_source": result.perplexity["source"]["ppl"],
        "ppl_quantized": result.perplexity["quantized"]["ppl"],
        "ppl_increase": result.perplexity["increase"],
        "size_ratio_vs_fp16": result.size["ratio_vs_fp16"],
        "roundtrip_max_abs_logit_diff": result.roundtrip["max_abs_logit_diff"],
        "passed": result.passed,
    }
    manifest["report"] = REPORT_JSON
    manifest["registered"] = result.registered
    write_manifest(out, manifest)


def render_markdown(r: dict[str, Any]) -> str:
    """The report for people: the cost table, the guard, the data, then answers side by side."""
    p, ppl = r["params"], r["perplexity"]
    settings = " · ".join(f"{k} {v}" for k, v in p.items())
    gate = r["gate"]
    verdict = "no guard set" if gate["max_ppl_increase"] is None else (
        f"{'PASS' if gate['passed'] else 'FAIL'} (allowed +{gate['max_ppl_increase']:.1%})"
    )
    size, mem, load = r["size"], r["memory"], r["load_s"]
    lines = [
        f"# Quantization report: {r['source']['ref']} → {r['output_dir']}",
        "",
        f"**{r['method']}** · {settings} · device {r['device']}",
        "",
        "| | source | quantized | change |",
        "|---|---:|---:|---:|",
        f"| perplexity per assistant token ({ppl['source']['examples']} validation records) "
        f"| {ppl['source']['ppl']:.4f} | {ppl['quantized']['ppl']:.4f} | {ppl['increase']:+.2%} |",
        f"| weights on disk | {_mb(size['source_weights_bytes'])} | {_mb(size['quantized_weights_bytes'])} "
        f"| {size['ratio_vs_fp16']:.2f}× the fp16 size ({_mb(size['fp16_bytes'])}); the {size['quantized_layers']} "
        f"quantized layers {size['quantized_layers_ratio_vs_fp16']:.2f}× |",
        f"| resident in memory | {mem['source_resident_mb']:.1f} MB | {mem['quantized_resident_mb']:.1f} MB "
        f"| {mem['quantized_resident_mb'] / max(mem['source_resident_mb'], 1e-9):.2f}× |",
        f"| load time (the source's includes first imports) | {load['source']:.2f} s | {load['quantized']:.2f} s | |",
    ]
    if mem.get("source_cuda_peak_mb") is not None:
        lines.append(f"| CUDA peak while evaluating | {mem['source_cuda_peak_mb']:.0f} MB | {mem['quantized_cuda_peak_mb']:.0f} MB | |")
    quality = r.get("quality")
    if quality:
        for name in QUALITY_ROWS:
            a, b = quality["source"].get(name), quality["quantized"].get(name)
            if a is not None and b is not None:
                lines.append(f"| {name} ({quality['source']['n']} greedy answers) | {a:.4f} | {b:.4f} | {b - a:+.4f} |")
        lines.append(f"| identical answers | | {quality['identical_outputs']:.0%} | |")
    d = r["data"]
    lines += [
        "",
        f"- Perplexity guard: {verdict}.",
        f"- Registered: {r['registered'] or 'no — ' + str(r['not_registered_because'])}.",
        f"- Saved model reproduces the in-memory one: max |Δlogit| {r['roundtrip']['max_abs_logit_diff']:.3g}.",
        f"- Data: {d['origin']}; {d['calibration_samples']} calibration texts"
        + (f" (sha256 {d['calibration_sha256'][:12]}…)" if d["calibration_sha256"] else "")
        + f", {d['eval_examples']} validation records.",
        f"- Process peak memory {mem['peak_rss_mb']:.0f} MB; quantizing took {r['wall_s']['quantize']:.1f} s of {r['wall_s']['total']:.1f} s.",
    ]
    if quality:
        lines += ["", "## Answers side by side", ""]
        for s in quality["samples"][:MD_SAMPLES]:
            lines += [
                f"**{s['task']}** `{s['id']}`{'' if s['same'] else ' — answers differ'}",
                "",
                f"- input: {_one_line(s['source_text'])}",
                f"- target: {_one_line(s['target'])}",
                f"- source model: {_one_line(s['source_model'])}",
                f"- quantized: {_one_line(s['quantized'])}",
                "",
            ]
    return "\n".join(lines).rstrip() + "\n"


def _mb(n: int) -> str:
    return f"{n / 2**20:.2f} MB"


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
