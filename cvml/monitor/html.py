"""`report.html`: one self-contained page made from report.json — inline CSS, the PNGs
embedded as data URIs, no script and no link to anything, so it opens offline, from a CI
artifact or an e-mail. The verdict comes first; then the drift table, the domain
classifier's words, the distributions, quality and safety (overall and per variant, with
intervals and tests), latency, feedback and the notes.

Everything shown is an aggregate, or a word the domain classifier found in at least five
redacted texts: no request's text appears on the page.
"""

from __future__ import annotations

import base64
from html import escape
from typing import Any

_STATE = {
    "ok": ("NO DRIFT", "ok", "No input drift and no quality alert."),
    "drift": ("DRIFT", "bad", "The inputs drifted from the reference: retraining is recommended."),
    "quality_alert": ("QUALITY ALERT", "bad", "A quality or safety rate is significantly worse."),
    "drift_and_quality_alert": ("DRIFT + QUALITY ALERT", "bad", "The inputs drifted and a quality rate is worse."),
}
_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2430;background:#f6f7f9}
main{max-width:1180px;margin:0 auto;padding:24px}
h1{font-size:20px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #d8dde4;padding-bottom:4px}
#verdict{border-radius:8px;padding:18px 22px;margin:12px 0 20px;color:#fff}
#verdict.ok{background:#2f9e44} #verdict.bad{background:#c92a2a}
#verdict .state{font-size:28px;font-weight:700;letter-spacing:.5px}
#verdict ul{margin:8px 0 0;padding-left:20px}
table{border-collapse:collapse;width:100%;background:#fff;margin:6px 0 12px;font-size:13px}
th,td{border:1px solid #e1e5ea;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#eef1f4} td.num{text-align:right;font-variant-numeric:tabular-nums}
.drift{color:#c92a2a;font-weight:600} .okv{color:#2f9e44} .skip{color:#868e96}
img{max-width:100%;background:#fff;border:1px solid #e1e5ea;border-radius:4px}
.meta td:first-child{width:180px;color:#495057} .small{color:#495057;font-size:12px}
"""


def render(report: dict[str, Any], images: dict[str, bytes]) -> str:
    """The page for `report` (report.json's content) with `images` (name -> PNG bytes) embedded."""
    state = report["verdict"]["state"]
    title, css_class, sentence = _STATE[state]
    model = report.get("model") or {}
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>cvml monitor — {escape(title)} — {escape(model.get('ref') or report['endpoint'])}</title>",
        f"<style>{_CSS}</style></head><body><main>",
        f"<h1>cvml monitor: {escape(model.get('ref') or 'requests')} on {escape(report['endpoint'])}</h1>",
        f'<div class="small">{escape(report["window"]["label"])} · made {escape(report["created_at"])}</div>',
        f'<section id="verdict" class="{css_class}" data-state="{escape(state)}">',
        f'<div class="state">{escape(title)}</div><div>{escape(sentence)}</div>',
        "<ul>" + "".join(f"<li>{escape(r)}</li>" for r in report["verdict"]["reasons"]) + "</ul></section>",
        _summary(report),
        _drift(report["drift"]),
        _classifier(report["drift"]["classifier"]),
        _image("Distributions: reference vs current", "distributions", images),
        _quality(report["quality"]),
        _image("Quality and safety over the window", "quality_over_time", images),
        _latency(report["quality"]["latency"]),
        _image("Latency over the window", "latency", images),
        _feedback(report["quality"]["feedback"]),
        _notes(report["notes"]),
        "</main></body></html>",
    ]
    return "\n".join(parts) + "\n"


def _summary(report: dict[str, Any]) -> str:
    ref, window, drift = report["reference"], report["window"], report["drift"]
    served = ", ".join(f"{escape(str(m))} ({n})" for m, n in report["served"].items()) or "—"
    mode = drift["threshold_mode"]
    how = f"{mode}: calibrated for {len(drift['calibrated'])} feature(s), fixed for {len(drift['fixed'])}"
    rows = [
        ("model", (report.get("model") or {}).get("ref") or "—"),
        ("request log", report["log"]),
        ("current window", f"{window['label']} — {window['requests']} requests"),
        ("reference", f"{ref['label']} — {ref['requests']} rows"),
        ("served by", served),
        ("thresholds", how),
        ("quality tests", f"Holm over {len(report['quality']['tests'])} tests, family-wise level "
                          f"{report['quality']['alpha']:g}"),
    ]  # fmt: skip
    body = "".join(f"<tr><td>{escape(k)}</td><td>{v if k == 'served by' else escape(str(v))}</td></tr>" for k, v in rows)
    return f'<h2>Summary</h2><table class="meta">{body}</table>'


def _drift(drift: dict[str, Any]) -> str:
    share = "—" if drift["share"] is None else f"{drift['share']:.0%}"
    head = (f"<h2>Input drift</h2><p>{len(drift['drifted'])} of {len(drift['tested'])} tested input features "
            f"drifted ({share}); the bound is {drift['drift_share']:.0%}. Output features are shown, not counted.</p>")  # fmt: skip
    rows = []
    for f in drift["features"]:
        if f["drifted"] is None:
            verdict = f'<span class="skip">not tested: {escape(f["skipped"] or "")}</span>'
        else:
            verdict = '<span class="drift">drift</span>' if f["drifted"] else '<span class="okv">ok</span>'
        side = "≥" if f["higher_is_drift"] else "<"
        bound = "" if f["threshold"] is None else f"{side} {_num(f['threshold'])} ({f['threshold_source']})"
        rows.append(
            f"<tr><td>{escape(f['name'])}</td><td>{f['group']}</td><td>{escape(f['test'] or '—')}</td>"
            f'<td class="num">{_num(f["statistic"])}</td><td>{escape(bound)}</td>'
            f"<td>{_summary_of(f['reference'])}</td><td>{_summary_of(f['current'])}</td>"
            f'<td class="num">{f["n_reference"]} / {f["n_current"]}</td><td>{verdict}</td></tr>'
        )
    header = ("<tr><th>feature</th><th>group</th><th>test</th><th>statistic</th><th>drift when</th>"
              "<th>reference</th><th>current</th><th>n ref / cur</th><th>verdict</th></tr>")  # fmt: skip
    return head + f'<table id="drift-table">{header}{"".join(rows)}</table>'


def _classifier(c: dict[str, Any]) -> str:
    if c["auc"] is None:
        return f"<h2>Domain classifier</h2><p class=\"skip\">Not run: {escape(c['skipped'] or '')}</p>"
    verdict = '<span class="drift">tells them apart</span>' if c["drifted"] else '<span class="okv">cannot tell</span>'
    text = (f"<h2>Domain classifier</h2><p>TF-IDF + logistic regression, scored on a held-out half: ROC AUC "
            f"<b>{c['auc']:.3f}</b> vs bound {c['threshold']:.3f} ({c['threshold_source']}), p = {_num(c['pvalue'])} — "
            f"{verdict}. Words that separate the two most (share of texts holding each):</p>")  # fmt: skip
    tables = []
    for side, label in (("current", "more typical of the current window"), ("reference", "more typical of the reference")):
        rows = "".join(
            f"<tr><td>{escape(w['word'])}</td><td class=\"num\">{w['reference_share']:.1%}</td>"
            f"<td class=\"num\">{w['current_share']:.1%}</td></tr>"
            for w in c["words"].get(side, [])
        )
        tables.append(f"<table><tr><th>{escape(label)}</th><th>reference</th><th>current</th></tr>{rows}</table>")
    return text + "".join(tables)


def _quality(q: dict[str, Any]) -> str:
    tests: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for t in q["tests"]:
        tests.setdefault((t["scope"], t["rate"]), []).append(t)
    out = ["<h2>Quality and safety</h2>"]
    if q["alerts"]:
        out.append("<ul>" + "".join(f'<li class="drift">{escape(a)}</li>' for a in q["alerts"]) + "</ul>")
    for scope, rates in q["rates"].items():
        reference = q["reference_rates"].get(scope) or q["reference_rates"].get("all") or {}
        rows = []
        for name, r in rates.items():
            found = tests.get((scope, name), [])
            marks = "; ".join(
                f"{'<span class=drift>ALERT</span> ' if t['alert'] else ''}vs {t['against']} "
                f"{_pct(t['baseline'])}: p adj {_num(t['adjusted_pvalue'])}"
                + (f", diff [{_signed(t['diff_low'])}, {_signed(t['diff_high'])}]" if t["diff_low"] is not None else "")
                for t in found
            )
            ref = reference.get(name)
            rows.append(
                f"<tr><td>{escape(name)}</td><td class=\"num\">{_pct(r['rate'])}</td>"
                f"<td class=\"num\">[{_pct(r['low'])}, {_pct(r['high'])}]</td><td class=\"num\">{r['events']} / {r['n']}</td>"
                f"<td class=\"num\">{_pct(ref['rate']) if ref else '—'}</td><td>{marks or '—'}</td></tr>"
            )
        title = "all requests" if scope == "all" else f"variant {scope}"
        out.append(f"<h3>{escape(title)}</h3><table><tr><th>rate</th><th>current</th><th>95% interval</th>"
                   f"<th>events / n</th><th>reference</th><th>tests</th></tr>{''.join(rows)}</table>")  # fmt: skip
    return "".join(out)


def _latency(latency: dict[str, Any]) -> str:
    rows = []
    for scope, figures in latency.items():
        for key in ("e2e_s", "ttft_s"):
            p = figures[key]
            rows.append(f"<tr><td>{escape(scope)}</td><td>{key}</td><td class=\"num\">{p['n']}</td>"
                        + "".join(f'<td class="num">{_num(p[q])}</td>' for q in ("p50", "p95", "p99")) + "</tr>")  # fmt: skip
    return ("<h2>Latency (seconds, successful requests)</h2><table><tr><th>scope</th><th>metric</th><th>n</th>"
            f"<th>p50</th><th>p95</th><th>p99</th></tr>{''.join(rows)}</table>")  # fmt: skip


def _feedback(feedback: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><td>{escape(scope)}</td><td class=\"num\">{f['with_feedback']}</td><td class=\"num\">{_pct(f['acceptance_rate'])}</td>"
        f"<td class=\"num\">{_num(f['mean_rating'])} ({f['ratings']})</td><td class=\"num\">{f['edits']}</td></tr>"
        for scope, f in feedback.items()
    )
    return ("<h2>User feedback</h2><table><tr><th>scope</th><th>with feedback</th><th>accepted</th>"
            f"<th>mean rating (n)</th><th>edited outputs</th></tr>{rows}</table>")  # fmt: skip


def _notes(notes: list[str]) -> str:
    if not notes:
        return ""
    return "<h2>Notes</h2><ul>" + "".join(f"<li>{escape(n)}</li>" for n in notes) + "</ul>"


def _image(title: str, name: str, images: dict[str, bytes]) -> str:
    data = images.get(name)
    if not data:
        return ""
    encoded = base64.b64encode(data).decode("ascii")
    return f'<h2>{escape(title)}</h2><img id="{name}" alt="{escape(title)}" src="data:image/png;base64,{encoded}">'


def _summary_of(summary: dict[str, Any]) -> str:
    if not summary:
        return "—"
    if "median" in summary:
        return escape(f"median {_num(summary['median'])} (p10 {_num(summary['p10'])}, p90 {_num(summary['p90'])})")
    return escape(", ".join(f"{k} {v:.0%}" for k, v in list(summary.items())[:4]))


def _num(value: float | None) -> str:
    if value is None:
        return "—"
    if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
        return f"{value:.2e}"
    return f"{value:.3g}" if abs(value) < 10 else f"{value:,.1f}"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def _signed(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:+.1f} pt"
