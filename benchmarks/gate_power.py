"""How trustworthy is bench's relative speed gate? False alarms on A/A runs, detections of
an injected slowdown.

Two copies of the same tiny model run in two cvml engines in this process: A (baseline)
and B (candidate). Each run is one interleaved `--baseline-model`-style measurement
(cvml.bench.sweep.measure_perf, AB/BA alternating blocks) followed by the gate
`perf.c<C>.output_tokens_per_s max_drop <bound>` (cvml.bench.gates, paired bootstrap).
- A/A runs: B is untouched; a failing gate is a false alarm.
- Slowdown runs: after every forward pass B waits `k` times a pass's mean duration, k
  calibrated at start so that B's throughput drops by `--slowdown` (15%); a failing gate
  is a detection. The delay scales with the forward pass, so it stays ~15% when the
  machine's speed drifts. It is a hook of this script (both models' `forward` is wrapped,
  A's never waits); cvml's engine is not modified.
A/A and slowdown runs alternate, so slow drift affects both rates alike. Each run also
reports the unpaired verdict (as if the baseline came from a saved report) for contrast.

The design. The gate fails when the upper end of the 95% CI of the throughput ratio is
below 1 - bound. With T interleaved pairs and a per-pair ratio noise s, the CI's upper end
sits about 2·s/√T above the estimate. Detecting a true 0.85 nine times in ten needs
0.85 + (1.28 + 1.96)·s/√T < 1 - bound; with bound 0.05 and T = 12 that holds up to
s ≈ 11% (a per-trial coefficient of variation of about 7-8%). A false alarm on a true 1.00
needs the estimate to fall about 5 + 2·s/√T points low, which at any s below 14% happens
in well under 5% of runs. The bound sits nearer 1.00 than 0.85 because the CI's own
half-width already protects the A/A side. 12 pairs × 24 requests × 32 tokens at
concurrency 4 take 15-30 s per run on the tiny model, inside 60 s.

    python benchmarks/gate_power.py                      # full: 40 + 40 runs, ~35-45 min
    python benchmarks/gate_power.py --runs 3             # reduced: proves it works

The last line printed is one JSON object: false_alarm_rate, detection_rate,
seconds_per_run (bench time of one gate decision, both sides), n_runs, bound, confidence,
Wilson 95% intervals of both rates, and the slowdown actually achieved.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
from pathlib import Path

TRIALS = 24  # pairs per run; see the design above


class SlowForward:
    """Wraps a model's forward: after each call, waits `factor` × the recent mean duration
    of a call (an exponential moving average, so the wait follows the machine's drift but
    does not multiply one descheduled call).

    The wait sleeps, then spins its last half millisecond, so it lasts what was asked
    (a bare sleep wakes late) without taking a core from the client. On a loaded machine a
    sleep still wakes late now and then (the core has gone to another process), which
    would add a delay that grows with the load, so the wrapper keeps account: `asked_s` is
    the sum of the waits asked, `waited_s` of the waits made, and each wait lasts what is
    still owed, so a late wake-up is repaid by the next waits and the injected time stays
    `factor` × the forward time at any load. Both sides get the wrapper (A keeps factor 0),
    so the A/A comparison is of identical code paths.
    """

    SPIN_S = 0.0005
    SMOOTHING = 0.05

    def __init__(self, forward):
        self.forward = forward
        self.factor = 0.0
        self.seconds = 0.0
        self.asked_s = 0.0
        self.waited_s = 0.0
        self.mean_s: float | None = None

    def __call__(self, *args, **kwargs):
        start = time.perf_counter()
        out = self.forward(*args, **kwargs)
        end = time.perf_counter()
        took = end - start
        self.seconds += took
        self.mean_s = took if self.mean_s is None else self.mean_s + self.SMOOTHING * (took - self.mean_s)
        if self.factor:
            self.asked_s += self.factor * self.mean_s
            owed = self.asked_s - self.waited_s
            if owed > 0:
                deadline = end + owed
                if owed > self.SPIN_S:
                    time.sleep(owed - self.SPIN_S)
                while time.perf_counter() < deadline:
                    pass
                self.waited_s += time.perf_counter() - end
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="artifacts/tiny/base", help="Model folder (build it with `cvml tiny model`).")
    parser.add_argument("--runs", type=int, default=40, help="A/A runs, and as many slowdown runs.")
    parser.add_argument("--trials", type=int, default=TRIALS, help="Trials per side per run (pairs for the bootstrap).")
    parser.add_argument("--requests", type=int, default=24, help="Requests per trial.")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=4, help="Warm-up requests per side per run.")
    parser.add_argument("--slowdown", type=float, default=0.15, help="Injected throughput drop of B.")
    parser.add_argument("--calibration-steps", type=int, default=2, help="Measured pairs of runs that correct the wait factor.")
    parser.add_argument("--max-drop", type=float, default=0.05, help="The gate's bound.")
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per engine.")
    args = parser.parse_args()
    if not (Path(args.model) / "config.json").is_file():
        sys.exit(f"gate_power: no model in {args.model}; build it with `cvml tiny model --out {args.model}` (or pass --model)")
    if args.runs < 1 or args.trials < 2 or args.calibration_steps < 1 or not 0 < args.slowdown < 1:
        sys.exit("gate_power: needs --runs >= 1, --trials >= 2, --calibration-steps >= 1 and 0 < --slowdown < 1")

    import torch
    from scipy.stats import norm

    from cvml._quiet import quiet_libraries
    from cvml.bench.gates import evaluate_gates
    from cvml.bench.perf import level_metrics, level_name
    from cvml.bench.sweep import Side, measure_perf
    from cvml.bench.targets import EngineTarget
    from cvml.bench.workload import perf_prompts, synthetic_records
    from cvml.modelio import load_for_inference
    from cvml.recipe import BenchSpec, GateSpec
    from cvml.serve.engine import Engine

    quiet_libraries()
    torch.set_num_threads(args.threads)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)

    level = level_name(args.concurrency)
    metric = f"perf.{level}.output_tokens_per_s"
    gate = GateSpec(metric=metric, max_drop=args.max_drop)
    spec = BenchSpec(
        concurrency=[args.concurrency], requests_per_level=args.requests, trials=args.trials,
        warmup_requests=args.warmup, max_new_tokens=args.max_new_tokens, ignore_eos=True,
    )
    prompts = perf_prompts(synthetic_records(64))
    engines, sides, waits = [], [], {}
    # Loaded, started and interleaved in run_bench's order: candidate first, then baseline.
    for label in ("candidate", "baseline"):
        try:
            loaded = load_for_inference(args.model, device="cpu", dtype="float32")
        except Exception as exc:  # noqa: BLE001 (one line, never a traceback)
            for engine in engines:
                engine.stop()
            sys.exit(f"gate_power: cannot load {args.model} ({type(exc).__name__}: {exc}); rebuild it with `cvml tiny model --out {args.model}`")
        waits[label] = loaded.model.forward = SlowForward(loaded.model.forward)
        engine = Engine(loaded, num_threads=args.threads)
        engine.start()
        engines.append(engine)
        target = EngineTarget(engine, loaded.tokenizer, max_new_tokens=args.max_new_tokens, ignore_eos=True, timeout_s=120)
        sides.append(Side(label, target))
    slow = waits["candidate"]

    def run(plan: BenchSpec = spec) -> tuple[dict, dict, float]:
        start = time.perf_counter()
        samples = measure_perf(sides, prompts, plan)
        seconds = time.perf_counter() - start
        run_id = uuid.uuid4().hex
        reports = {
            label: {
                "metrics": {"perf": {lv: level_metrics(trials) for lv, trials in by_level.items()}},
                "samples": {"perf": by_level},
                "pairing": {"run_id": run_id},
            }
            for label, by_level in samples.items()
        }
        return reports["candidate"], reports["baseline"], seconds

    def pair_ratios(candidate: dict, baseline: dict) -> list[float]:
        return [
            c["output_tokens_per_s"] / b["output_tokens_per_s"]
            for c, b in zip(candidate["samples"]["perf"][level], baseline["samples"]["perf"][level])
        ]

    def measured_ratio(candidate: dict, baseline: dict) -> float:
        """B/A throughput as the gate estimates it: ratio of the trial means."""
        return candidate["metrics"]["perf"][level]["output_tokens_per_s"] / baseline["metrics"]["perf"][level]["output_tokens_per_s"]

    def verdicts(candidate: dict, baseline: dict) -> tuple[bool, bool, dict]:
        paired = evaluate_gates([gate], candidate, baseline, confidence=args.confidence)[0]
        unpaired = evaluate_gates([gate], {**candidate, "pairing": {}}, baseline, confidence=args.confidence)[0]
        return paired.failed, unpaired.failed, paired.to_dict()

    try:
        factor, calibration = _calibrate(args, spec, level, run, slow, measured_ratio, pair_ratios, log)
        outcomes = {"aa": [], "slow": []}
        for i in range(args.runs):
            for kind in ("aa", "slow"):
                slow.factor = factor if kind == "slow" else 0.0
                candidate, baseline, seconds = run()
                failed, failed_unpaired, evidence = verdicts(candidate, baseline)
                ratios = pair_ratios(candidate, baseline)
                outcomes[kind].append({
                    "failed": failed, "failed_unpaired": failed_unpaired, "seconds": seconds,
                    "pair_sd": statistics.stdev(ratios), **evidence,
                })
                log(
                    f"run {i + 1}/{args.runs} {kind:>4}: ratio {evidence['observed']:.3f} "
                    f"CI [{evidence['ci_low']:.3f}, {evidence['ci_high']:.3f}] → {'FAIL' if failed else 'pass'} "
                    f"(unpaired {'FAIL' if failed_unpaired else 'pass'}) in {seconds:.1f} s"
                )
    finally:
        slow.factor = 0.0
        for engine in engines:
            engine.stop()

    aa, sl = outcomes["aa"], outcomes["slow"]
    n, t = args.runs, args.trials
    fa, det = sum(o["failed"] for o in aa), sum(o["failed"] for o in sl)
    aa_obs, sl_obs = [o["observed"] for o in aa], [o["observed"] for o in sl]
    aa_mean = statistics.mean(aa_obs)
    # The slowdown the slow runs really had: their mean B/A ratio against the A/A runs' mean
    # (which carries any A/B asymmetry of the setup), with a normal 95% interval over runs.
    achieved = 1 - statistics.mean(sl_obs) / aa_mean
    achieved_se = (statistics.variance(aa_obs) / n + statistics.variance(sl_obs) / n) ** 0.5 if n > 1 else float("nan")
    # Per-pair noise s (root mean within-run variance of the per-pair ratios) and what the
    # design's arithmetic expects from it: detection Φ((drop - bound)/(s/√T) - z), false alarm
    # Φ(-bound/(s/√T) - z), the CI's upper end sitting z·s/√T above the estimate.
    s_aa = statistics.mean(o["pair_sd"] ** 2 for o in aa) ** 0.5
    s_sl = statistics.mean(o["pair_sd"] ** 2 for o in sl) ** 0.5
    z = float(norm.ppf(1 - (1 - args.confidence) / 2))
    seconds = [o["seconds"] for o in aa + sl]
    print(json.dumps({
        "benchmark": "gate_power",
        "model": args.model,
        "gate": f"{metric} max_drop {args.max_drop:g}",
        "n_runs": n,
        "bound": args.max_drop,
        "confidence": args.confidence,
        "trials": t,
        "requests": args.requests,
        "concurrency": args.concurrency,
        "max_new_tokens": args.max_new_tokens,
        "threads": args.threads,
        "false_alarm_rate": round(fa / n, 4),
        "false_alarm_ci95": _wilson(fa, n),
        "detection_rate": round(det / n, 4),
        "detection_ci95": _wilson(det, n),
        "unpaired_false_alarm_rate": round(sum(o["failed_unpaired"] for o in aa) / n, 4),
        "unpaired_detection_rate": round(sum(o["failed_unpaired"] for o in sl) / n, 4),
        "injected_slowdown": args.slowdown,
        "achieved_slowdown": round(achieved, 4),
        "achieved_slowdown_ci95": [round(achieved - 1.96 * achieved_se, 4), round(achieved + 1.96 * achieved_se, 4)] if n > 1 else None,
        "aa_ratio_mean": round(aa_mean, 4),
        "slow_ratio_mean": round(statistics.mean(sl_obs), 4),
        "ci_width_mean": round(statistics.mean(o["ci_high"] - o["ci_low"] for o in aa + sl), 4),
        "pair_sd_aa": round(s_aa, 4),
        "pair_sd_slow": round(s_sl, 4),
        "expected_false_alarm_rate": round(float(norm.cdf(-args.max_drop / (s_aa / t**0.5) - z)), 4),
        "expected_detection_rate": round(float(norm.cdf((achieved - args.max_drop) / (s_sl / t**0.5) - z)), 4),
        "calibration": calibration,
        "seconds_per_run": round(statistics.mean(seconds), 2),
        "seconds_per_run_max": round(max(seconds), 2),
        "targets_met": fa / n <= 0.05 and det / n >= 0.90 and max(seconds) <= 60,
    }))


def _gap(drop: float) -> float:
    """The extra time, per unit of undelayed time, that drops throughput by `drop`."""
    return 1 / (1 - drop) - 1


def _calibrate(args, spec, level: str, run, slow: SlowForward, measured_ratio, pair_ratios, log) -> tuple[float, dict]:
    """The wait factor k that drops B's measured throughput by `args.slowdown`.

    B's time grows by k × (its time in forward passes), so k·σ = 1/(1 - drop) - 1 for an
    effective share σ of B's time in forward passes. A first guess of σ is the share measured
    with the delay off; waiting also shifts batching and scheduling a little, so then
    `--calibration-steps` full interleaved runs with the delay on measure the B/A ratio
    that k really makes (as the gate estimates it) and correct k by a fixed-point step,
    k ← (1/(1 - slowdown) - 1) / σ̂, with σ̂ = Σ(1/(1 - drop_j) - 1) / Σ k_j pooled over every
    step so far, so later steps average out the noise of earlier ones. A step changes k by
    at most ×1.5, so a noisy measurement cannot run away.
    """
    wanted = _gap(args.slowdown)
    slow.factor = 0.0
    before_s = slow.seconds
    candidate, _, _ = run(spec.model_copy(update={"warmup_requests": 0, "trials": 6}))
    wall = sum(t["wall_s"] for t in candidate["samples"]["perf"][level])
    share = min((slow.seconds - before_s) / wall, 1.0)
    factor = wanted / share
    steps = []
    for step in range(args.calibration_steps):
        slow.factor = factor
        waited_s, forward_s = slow.waited_s, slow.seconds
        candidate, baseline, seconds = run()
        ratio = measured_ratio(candidate, baseline)
        ratios = pair_ratios(candidate, baseline)
        wall = sum(t["wall_s"] for t in candidate["samples"]["perf"][level])
        steps.append({
            "factor": round(factor, 4), "ratio": round(ratio, 4), "drop": round(1 - ratio, 4),
            "pair_sd": round(statistics.stdev(ratios), 4), "seconds": round(seconds, 1),
            # B's time in waits and in forward passes (warm-up included), per second of its trials
            "wait_share": round((slow.waited_s - waited_s) / wall, 4),
            "forward_share": round((slow.seconds - forward_s) / wall, 4),
            "forward_ms": round(1000 * slow.mean_s, 3),
        })
        log(f"calibration {step + 1}/{args.calibration_steps}: k {factor:.3f} → B/A {ratio:.3f} "
            f"(drop {1 - ratio:.3f}, wanted {args.slowdown:.3f}) in {seconds:.1f} s")
        sigma = sum(_gap(min(s["drop"], 0.9)) for s in steps) / sum(s["factor"] for s in steps)
        factor = min(max(wanted / max(sigma, 1e-6), factor / 1.5), factor * 1.5)
    predicted = 1 - 1 / (1 + factor * sigma)  # `slowdown` unless the ×1.5 limit bit
    calibration = {
        "forward_share": round(share, 4),
        "first_factor": round(wanted / share, 4),
        "steps": steps,
        "effective_share": round(sigma, 4),
        "factor": round(factor, 4),
        "predicted_drop": round(predicted, 4),
    }
    log(f"calibration: k {factor:.3f} (effective share {sigma:.3f}, predicted drop {predicted:.3f})")
    return factor, calibration


def _wilson(k: int, n: int) -> list[float]:
    from scipy.stats import binomtest

    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    return [round(ci.low, 4), round(ci.high, 4)]


if __name__ == "__main__":
    main()
