"""How well does `cvml monitor` tell a changed production from an ordinary one, and how fast
is a report? False alarms on windows of ordinary traffic, detections in drifted ones, and
the report's speed on a 100,000-request log.

Simulated production (cvml.monitor.simulate, from the synthetic CV generator), written
through the real request log (redacted, as `cvml serve` writes it) to a SQLite file:
- a reference week: `--reference-size` ordinary requests;
- then windows of `--window-size` requests each (the default window size), one hour each:
  `--no-drift-windows` of ordinary traffic, and `--drift-windows` of each drift:
  industry_shift (people and the jobs they tailor to from health care, trades, logistics,
  retail and teaching), language_shift (30% of requests in German, Spanish or French),
  longer_inputs (two texts and two job ads pasted together), regressed_model (the model
  fabricates twice as often: 3% → 6% of outputs before the guard);
and a stand-in model registered as sim@1 (its training split is other people from the
same generator, its vocabulary and tokenizer are the monitor's).

Each window is one `Monitor.report()` against the reference week with the default rules;
a window is flagged when the verdict is not ok (exit code 1: input drift or a quality
alert). Speed: one report over the first `--speed-rows` requests of the log (reading,
features, tests, classifier, quality; the PNG/HTML writing is timed apart).

    python benchmarks/monitor_power.py                        # full: 100 + 4 x 25 windows, 205k rows (~6-9 min)
    python benchmarks/monitor_power.py --no-drift-windows 5 --drift-windows 3 --speed-rows 20000   # quick

The last line printed is one JSON object: false_alarm_rate (target ≤ 0.05),
detection_rate (target ≥ 0.9) and detection per scenario, Wilson 95% intervals,
what fired (share rule, classifier, quality alert), seconds per window report,
rows_per_s of the speed report (target ≥ 20,000) with its rows and seconds, and the
sizes used.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

SCENARIOS = ("industry_shift", "language_shift", "longer_inputs", "regressed_model")
START = datetime(2026, 6, 1, tzinfo=timezone.utc)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window-size", type=int, default=1000, help="requests per window")
    parser.add_argument("--reference-size", type=int, default=5000, help="requests in the reference week")
    parser.add_argument("--no-drift-windows", type=int, default=100)
    parser.add_argument("--drift-windows", type=int, default=25, help="windows of each drift scenario")
    parser.add_argument("--speed-rows", type=int, default=100_000, help="requests in the speed report's window")
    parser.add_argument("--feedback-share", type=float, default=0.05, help="requests that get user feedback")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default=None, help="folder for the log, registry and model (default: a temp dir)")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="cvml-monitor-power-"))
    os.environ["CVML_HOME"] = str(work / "home")
    os.environ.pop("CVML_DB_URL", None)

    from cvml.monitor import Monitor
    from cvml.monitor.simulate import SCENARIOS as TRAFFIC
    from cvml.monitor.simulate import (
        request_pool,
        simulate,
        stand_in_model,
        training_split,
        write_jsonl,
        write_log,
    )
    from cvml.recipe import MonitorSpec
    from cvml.registry import Registry
    from cvml.windows import Window

    # --- inputs: the model (other people), then production ---------------------------------
    started = time.perf_counter()
    pool = request_pool(seed=args.seed, n_people=3000)
    trained = {row["group"] for row in pool if int(row["group"][1:]) % 3 == 0}
    rows = training_split([r for r in pool if r["group"] in trained], 4000, seed=args.seed + 1)
    model_dir = stand_in_model(work / "model", write_jsonl(work / "train.jsonl", rows), rows)
    Registry().register(model_dir, "sim", "finetune", reason="monitor_power benchmark")
    pool = [r for r in pool if r["group"] not in trained]
    windows: list[tuple[str, Window]] = []
    reference = Window(START, START + timedelta(days=7))
    entries, feedback = simulate(pool, args.reference_size, replace(TRAFFIC["no_drift"], feedback_share=args.feedback_share),
                                 reference, seed=args.seed + 10)  # fmt: skip
    plan = ["no_drift"] * args.no_drift_windows + [s for s in SCENARIOS for _ in range(args.drift_windows)]
    for i, scenario in enumerate(plan):
        slot = Window(reference.end + timedelta(hours=i), reference.end + timedelta(hours=i + 1))
        traffic = replace(TRAFFIC[scenario], feedback_share=args.feedback_share)
        e, f = simulate(pool, args.window_size, traffic, slot, seed=args.seed + 100 + i)
        entries += e
        feedback += f
        windows.append((scenario, slot))
    log_file = work / "requests.db"
    log(f"writing {len(entries):,} requests and {len(feedback):,} feedback through the request log ...")
    write_log(log_file, entries, feedback)
    setup_s = time.perf_counter() - started
    log(f"inputs ready in {setup_s:.0f} s")

    # --- power: one report per window --------------------------------------------------------
    spec = MonitorSpec(reference=_range(reference), window="1h", model="sim@1")
    monitor = Monitor(spec, log=log_file, seed=args.seed)
    outcomes: dict[str, list[dict]] = {name: [] for name in ("no_drift", *SCENARIOS)}
    seconds = []
    for i, (scenario, slot) in enumerate(windows):
        t0 = time.perf_counter()
        result = monitor.report(end=slot.end)
        seconds.append(time.perf_counter() - t0)
        outcomes[scenario].append({
            "flagged": result.exit_code == 1, "share": result.drift.detected and "share" in result.drift.rules,
            "classifier": "classifier" in result.drift.rules, "quality": bool(result.quality.alerts),
            "auc": result.drift.classifier.auc, "drift_share": result.drift.share,
            "alerts": [t.describe() for t in result.quality.alerts],
        })  # fmt: skip
        if (i + 1) % 10 == 0 or i + 1 == len(windows):
            log(f"{i + 1}/{len(windows)} windows ({scenario}: {'flagged' if result.exit_code else 'ok'})")

    # --- speed: one report over the first --speed-rows requests ------------------------------
    times = sorted(e.at for e in entries)
    n_speed = min(args.speed_rows, len(times))
    speed_window = f"{times[0].isoformat()}..{(times[n_speed - 1] + timedelta(microseconds=1)).isoformat()}"
    speed_spec = MonitorSpec(reference="training", window=speed_window, model="sim@1")
    speed_monitor = Monitor(speed_spec, log=log_file, seed=args.seed)
    t0 = time.perf_counter()
    speed = speed_monitor.report()
    speed_s = time.perf_counter() - t0
    from cvml.monitor.report import write_report

    t0 = time.perf_counter()
    write_report(speed, work / "speed-report")
    write_s = time.perf_counter() - t0

    # --- results ------------------------------------------------------------------------------
    table = []
    for name, found in outcomes.items():
        flagged = sum(o["flagged"] for o in found)
        table.append({
            "scenario": name, "windows": len(found), "flagged": flagged, "rate": flagged / len(found) if found else None,
            "share_rule": sum(o["share"] for o in found), "classifier_rule": sum(o["classifier"] for o in found),
            "quality_alert": sum(o["quality"] for o in found),
        })  # fmt: skip
    print(f"{'scenario':<16}{'windows':>8}{'flagged':>9}{'rate':>7}{'share':>7}{'clf':>6}{'quality':>9}")
    for row in table:
        rate = "—" if row["rate"] is None else f"{row['rate']:.2f}"
        print(f"{row['scenario']:<16}{row['windows']:>8}{row['flagged']:>9}{rate:>7}{row['share_rule']:>7}"
              f"{row['classifier_rule']:>6}{row['quality_alert']:>9}")  # fmt: skip
    rows_per_s = speed.current_requests / speed_s
    print(f"speed: {speed.current_requests:,} requests (+{len(speed.reference.rows):,} reference rows) in "
          f"{speed_s:.2f} s = {rows_per_s:,.0f} rows/s; report files written in {write_s:.2f} s")
    no_drift = outcomes["no_drift"]
    drifted = [o for name in SCENARIOS for o in outcomes[name]]
    false_alarms, detections = sum(o["flagged"] for o in no_drift), sum(o["flagged"] for o in drifted)
    false_alarm_causes = [o["alerts"] or ("classifier" if o["classifier"] else "share") for o in no_drift if o["flagged"]]
    result = {
        "false_alarm_rate": round(false_alarms / len(no_drift), 4) if no_drift else None,
        "false_alarm_ci95": _wilson(false_alarms, len(no_drift)) if no_drift else None,
        "detection_rate": round(detections / len(drifted), 4) if drifted else None,
        "detection_ci95": _wilson(detections, len(drifted)) if drifted else None,
        "detection_by_scenario": {name: round(sum(o["flagged"] for o in outcomes[name]) / len(outcomes[name]), 4)
                                  for name in SCENARIOS if outcomes[name]},
        "fired": {row["scenario"]: {k: row[k] for k in ("share_rule", "classifier_rule", "quality_alert")} for row in table},
        "false_alarm_causes": false_alarm_causes,
        "rows_per_s": round(rows_per_s),
        "speed_rows": speed.current_requests,
        "speed_reference_rows": len(speed.reference.rows),
        "speed_seconds": round(speed_s, 3),
        "speed_write_report_seconds": round(write_s, 3),
        "seconds_per_window_report": round(sum(seconds) / len(seconds), 3),
        "window_size": args.window_size,
        "reference_size": args.reference_size,
        "windows": {"no_drift": len(no_drift), **{name: len(outcomes[name]) for name in SCENARIOS}},
        "setup_seconds": round(setup_s, 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }  # fmt: skip
    print(json.dumps(result))


def _range(window) -> str:
    return f"{window.start.isoformat()}..{window.end.isoformat()}"


def _wilson(k: int, n: int) -> list[float]:
    from scipy.stats import binomtest

    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    return [round(ci.low, 4), round(ci.high, 4)]


if __name__ == "__main__":
    main()
