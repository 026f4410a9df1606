"""report.html in a real browser: Debian's Chromium, headless, driven by Playwright pointed at
the system binary (never a downloaded browser). The page must render offline with no
console error, show its verdict first, and load every embedded image; a screenshot is
taken. This test fails — it does not skip — when the browser cannot run: `make test`
installs Chromium (apt-get install chromium) when it is missing."""

from __future__ import annotations

import os
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from cvml.monitor import Monitor
from cvml.monitor.report import write_report
from cvml.monitor.simulate import SCENARIOS, request_pool, simulate, write_log
from cvml.recipe import MonitorSpec
from cvml.windows import Window

CHROMIUM = os.environ.get("CVML_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


def _reports(tmp_path: Path) -> dict[str, Path]:
    """Two report folders from one small log: a calm day and a day in other languages."""
    pool = request_pool(seed=2, n_people=300)
    start = datetime(2026, 11, 1, tzinfo=timezone.utc)
    days = [Window(start + timedelta(days=i), start + timedelta(days=i + 1)) for i in range(3)]
    entries, feedback = [], []
    for i, (day, traffic) in enumerate(zip(days, ("no_drift", "no_drift", "language_shift"))):
        e, f = simulate(pool, 400 if i == 0 else 200, SCENARIOS[traffic], day, seed=i)
        entries += e
        feedback += f
    log = tmp_path / "requests.db"
    write_log(log, entries, feedback)
    folders = {}
    for name, window in (("ok", "2026-11-02..2026-11-02"), ("drift", "2026-11-03..2026-11-03")):
        spec = MonitorSpec(reference="2026-11-01..2026-11-01", window=window)
        result = Monitor(spec, log=log, seed=3).report()
        folders[result.state] = Path(write_report(result, tmp_path / name)["html"])
    return folders


def _browser(playwright):
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"Chromium is not installed at {CHROMIUM}: `apt-get install chromium` (make test installs it)")
    args = ["--no-sandbox"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []  # root cannot sandbox
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)


def _listen(page, problems: list[str], fetched: list[str]) -> None:
    """Collect console errors and warnings, page errors, failed loads and every URL fetched."""
    page.on("console", lambda m: problems.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"failed: {r.url}"))
    page.on("request", lambda r: fetched.append(r.url))


def test_the_report_renders_offline_in_headless_chromium_with_its_verdict_first(tmp_path):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:  # a test dependency: pip install -e .[test]
        pytest.fail(f"playwright is not installed: {exc}")
    reports = _reports(tmp_path)
    assert set(reports) >= {"ok"} and any(state != "ok" for state in reports)
    with sync_playwright() as playwright:
        browser = _browser(playwright)
        context = browser.new_context(offline=True, viewport={"width": 1280, "height": 900})
        try:
            for state, html in reports.items():
                page = context.new_page()
                problems: list[str] = []
                fetched: list[str] = []
                _listen(page, problems, fetched)
                page.goto(html.as_uri(), wait_until="load")

                verdict = page.locator("#verdict")
                assert verdict.is_visible() and verdict.get_attribute("data-state") == state
                headline = verdict.locator(".state").inner_text()
                if state == "ok":
                    assert headline == "NO DRIFT"
                else:
                    assert "DRIFT" in headline or "ALERT" in headline
                box = verdict.bounding_box()
                assert box is not None and box["y"] < 200  # the verdict is the first thing on the page
                # the verdict's colour says it too
                color = page.evaluate("getComputedStyle(document.getElementById('verdict')).backgroundColor")
                assert color == ("rgb(47, 158, 68)" if state == "ok" else "rgb(201, 42, 42)")
                assert page.locator("#drift-table tr").count() == 12  # header + 11 features
                images = page.evaluate(
                    "[...document.images].map(i => ({id: i.id, ok: i.complete && i.naturalWidth > 100}))"
                )
                assert {i["id"] for i in images} == {"distributions", "quality_over_time", "latency"}
                assert all(i["ok"] for i in images), images
                assert all(url.startswith(("file://", "data:")) for url in fetched), fetched
                assert problems == []
                shot = tmp_path / f"report-{state}.png"
                page.screenshot(path=str(shot), full_page=True)
                assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000
                page.close()
        finally:
            browser.close()
