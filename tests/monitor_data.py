"""A seeded request log for the monitor's tests: a reference day of ordinary traffic, then
one day per scenario, all from `cvml.monitor.simulate` (the synthetic CV generator), and a
stand-in model registered with its train split, vocabulary and tokenizer.

    written = seed_log(log_location, registry_location, tmp_path)
    Monitor(MonitorSpec(reference=REFERENCE, window=day("language_shift")), log=...).report()
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cvml.monitor.simulate import (
    SCENARIOS,
    Traffic,
    request_pool,
    simulate,
    stand_in_model,
    training_split,
    write_jsonl,
    write_log,
)
from cvml.registry import Registry
from cvml.windows import Window

START = datetime(2026, 11, 1, tzinfo=timezone.utc)
REFERENCE_ROWS, DAY_ROWS = 1200, 400
MODEL = "sim@1"  # what the simulated server logs as model_version; registered as sim@1 below
# Day 0 is the reference; each later day one scenario.
DAYS: dict[str, Traffic] = {
    "reference": SCENARIOS["no_drift"],
    "no_drift": SCENARIOS["no_drift"],
    "language_shift": replace(SCENARIOS["language_shift"], foreign_share=0.4),
    "longer_inputs": SCENARIOS["longer_inputs"],
    "industry_shift": SCENARIOS["industry_shift"],
    "regressed_model": replace(SCENARIOS["regressed_model"], fabrication_rate=0.12),
    "errors": replace(SCENARIOS["no_drift"], error_rate=0.08, timeout_rate=0.03),
}
REFERENCE = "2026-11-01..2026-11-01"


def day(name: str) -> str:
    """The window (one UTC day) of a scenario, as --window takes it."""
    date = (START + timedelta(days=list(DAYS).index(name))).date().isoformat()
    return f"{date}..{date}"


def day_window(name: str) -> Window:
    start = START + timedelta(days=list(DAYS).index(name))
    return Window(start, start + timedelta(days=1))


def seed_log(log: str | Path | None, registry: str | Path | None, folder: Path, feedback_share: float = 0.1) -> dict:
    """Write every day's requests to the log and register the stand-in model as sim@1.

    Returns:
        {"model_dir", "train_file", "requests", "feedback"}
    """
    pool = request_pool(seed=0, n_people=1000)
    # The model was trained on some people; production brings others.
    trained = {f"p{i:05d}" for i in range(0, 1000, 3)}
    rows = training_split([r for r in pool if r["group"] in trained], 1500, seed=3)
    pool = [r for r in pool if r["group"] not in trained]
    train_file = write_jsonl(folder / "data" / "train.jsonl", rows)
    model_dir = stand_in_model(folder / "model", train_file, rows)
    Registry(registry).register(model_dir, "sim", "finetune", reason="monitor tests")
    entries, feedback = [], []
    for i, (name, traffic) in enumerate(DAYS.items()):
        n = REFERENCE_ROWS if name == "reference" else DAY_ROWS
        e, f = simulate(pool, n, replace(traffic, feedback_share=feedback_share), day_window(name), seed=100 + i)
        entries += e
        feedback += f
    write_log(log, entries, feedback)
    return {"model_dir": model_dir, "train_file": train_file, "requests": len(entries), "feedback": feedback}
