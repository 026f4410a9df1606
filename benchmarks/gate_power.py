"""How trustworthy is bench's relative speed gate? False alarms on A/A runs, detections of
an injected slowdown.

Two copies of the same tiny model run in two cvml engines in this process: A (baseline)
and B (candidate). Each run is one interleaved `--baseline-model`-style measurement
(cvml.bench.sweep.measure_perf, AB/BA alternating blocks) followed by the gate
`perf.c<C>.output_tokens_per_s max_drop <bound>` (cvml.bench.gates, paired bootstrap).
- A/A runs: B is untouched; a failing gate is a false alarm.
- Slowdown runs: after every forward pass B waits `k` times a pass's mean duration; a
  failing gate is a detection. The delay scales with the forward pass, so it stays ~15%
  when the machine's speed drifts. It is a hook of this script (both models' `forward` is
  wrapped, A's never waits); cvml's engine is not modified.
A/A and slowdown runs alternate, so slow drift affects both rates alike. Each run also
reports the unpaired verdict (as if the baseline came from a saved report) for contrast.

Calibration. k is set from measured pairs, not assumed: a first guess from the share of
B's time spent in forward passes (delay off), then `--calibration-steps` (2) full runs
with the delay on, each comparing the B/A throughput ratio it measured (as the gate
estimates it) with the asked 0.85 and correcting k by a fixed-point step (WaitFactor).
Waiting shifts batching and scheduling, more so on a shared CPU, so the drop k makes is
not k × the forward share; measured here it was often larger. One run's ratio carries
noise s/√T (about ±3 points), so every slow run is one more step, pooled with all before
it: the slowdown settles on the asked one as runs accumulate. `achieved_slowdown` is the
measured one: 1 - mean slow-run ratio / mean A/A ratio, with a 95% interval.

The design. The gate fails when the upper end of the 95% CI of the throughput ratio is
below 1 - bound. With T interleaved pairs and a per-pair ratio noise s (the standard
deviation of one pair's B/A ratio), the estimate's standard error is about s/√T and the
CI's upper end sits about 1.96·s/√T above it. Detecting a true 0.85 nine times in ten
needs 0.85 + (1.28 + 1.96)·s/√T < 1 - bound, i.e. s/√T < 0.031 with bound 0.05. With
T = 12 that held only up to s ≈ 11%, and the 17/20 detections seen with 12 pairs match
s ≈ 11-12%. With T = 24 it holds up to s ≈ 15%: power ≈ 0.98 at s = 12%, ≈ 0.90 at 15%.
On this 2-core machine, while other processes shared it (load average 3-5.6), s measured
11-27% per run (median about 18%, where the power is ≈ 0.8): the targets need the
machine to itself, or close to it. A false alarm on a true 1.00 needs the estimate to fall
5 + 1.96·s/√T points low, 3.6 standard errors at s = 15% (probability < 0.001) and still
under 0.2% at s = 25%; the percentile bootstrap's CI is a little narrower than the normal
one, so the true rate is somewhat higher, still far under 5%. The bound sits nearer 1.00
than 0.85 because the CI's own half-width already protects the A/A side. 24 pairs × 24
requests × 32 tokens at concurrency 4 took 32-45 s per run here at load 3-4 and 37-58 s
at load 4.5-5.6 (slow runs the longer; one reached 64 s at load 5), inside 60 s but for
the heaviest load. 30 pairs would hold to s ≈ 17% but would not fit 60 s on a shared
machine.

    python benchmarks/gate_power.py                      # full: 40 + 40 runs, ~45-70 min
    python benchmarks/gate_power.py --runs 3             # reduced: proves it works

The last line printed is one JSON object: false_alarm_rate, detection_rate,
seconds_per_run (bench time of one gate decision, both sides) and its max, n_runs, bound,
confidence, Wilson 95% intervals of both rates, the slowdown actually achieved (measured,
with its interval), the calibration, the per-pair noise s of both kinds of run
(pair_sd_aa, pair_sd_slow) with the rates the arithmetic above expects from it, and the
machine's load average.
"""

from __future__ import annotations

import argparse
import json
import os
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
    parser.add_argument("--calibration-steps", type=int, default=2, help="Full runs with the delay on that correct the wait factor before the slow runs.")
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
            why = " ".join(f"{type(exc).__name__}: {exc}".split())
            sys.exit(f"gate_power: cannot load {args.model} ({why}); rebuild it with `cvml tiny model --out {args.model}`")
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
        wait = _calibrate(args, spec, level, run, slow, measured_ratio, pair_ratios, log)
        outcomes = {"aa": [], "slow": []}
        for i in range(args.runs):
            for kind in ("aa", "slow"):
                slow.factor = wait.k if kind == "slow" else 0.0
                load = os.getloadavg()[0]
                candidate, baseline, seconds = run()
                failed, failed_unpaired, evidence = verdicts(candidate, baseline)
                ratios = pair_ratios(candidate, baseline)
                outcomes[kind].append({
                    "failed": failed, "failed_unpaired": failed_unpaired, "seconds": seconds,
                    "pair_sd": statistics.stdev(ratios), "factor": slow.factor, "load": load, **evidence,
                })
                log(
                    f"run {i + 1}/{args.runs} {kind:>4}: ratio {evidence['observed']:.3f} "
                    f"CI [{evidence['ci_low']:.3f}, {evidence['ci_high']:.3f}] → {'FAIL' if failed else 'pass'} "
                    f"(unpaired {'FAIL' if failed_unpaired else 'pass'}) in {seconds:.1f} s"
                    + (f", k {slow.factor:.3f}" if kind == "slow" else "")
                )
                if kind == "slow":  # one more fixed-point step, for the next slow run
                    wait.step(1 - measured_ratio(candidate, baseline))
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
    s_aa = max(statistics.mean(o["pair_sd"] ** 2 for o in aa) ** 0.5, 1e-9)
    s_sl = max(statistics.mean(o["pair_sd"] ** 2 for o in sl) ** 0.5, 1e-9)
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
        "calibration": {
            **wait.calibration,
            "slow_run_factors": [round(min(o["factor"] for o in sl), 4), round(max(o["factor"] for o in sl), 4)],
            "effective_share": round(wait.sigma, 4),
        },
        # 1-minute load average before each run: above ~2 on 2 cores, other processes share the CPU
        "load_average": [round(min(o["load"] for o in aa + sl), 2), round(max(o["load"] for o in aa + sl), 2)],
        "seconds_per_run": round(statistics.mean(seconds), 2),
        "seconds_per_run_max": round(max(seconds), 2),
        "targets_met": fa / n <= 0.05 and det / n >= 0.90 and max(seconds) <= 60,
    }))


def _gap(drop: float) -> float:
    """The extra time, per unit of undelayed time, that drops throughput by `drop`."""
    return 1 / (1 - drop) - 1


class WaitFactor:
    """The wait factor k that drops B's measured throughput by `slowdown`, by fixed-point steps.

    B's time grows by k × (its time in forward passes), so k·σ = 1/(1 - drop) - 1 for an
    effective share σ of B's time in forward passes. Waiting also shifts batching and
    scheduling (more so while other processes share the CPU), so σ is measured: every run
    with the delay on gives the drop that its k really made (the B/A throughput ratio as the
    gate estimates it) and one step k ← (1/(1 - slowdown) - 1) / σ̂, with
    σ̂ = Σ(1/(1 - drop_j) - 1) / Σ k_j pooled over every run so far, so the noise of one
    run's ratio (≈ s/√T) averages out as runs accumulate. A step changes k by at most ×1.5,
    so one noisy measurement cannot run away.
    """

    LIMIT = 1.5

    def __init__(self, slowdown: float, first: float):
        self.wanted = _gap(slowdown)
        self.k = first
        self.gaps = 0.0
        self.ks = 0.0
        self.calibration: dict = {}

    def step(self, drop: float) -> None:
        """One measured run at the current k: its drop; moves k toward the asked slowdown."""
        self.gaps += _gap(min(drop, 0.9))
        self.ks += self.k
        sigma = self.gaps / self.ks
        self.k = min(max(self.wanted / sigma if sigma > 0 else self.k * self.LIMIT, self.k / self.LIMIT), self.k * self.LIMIT)

    @property
    def sigma(self) -> float:
        return self.gaps / self.ks if self.ks else float("nan")


def _calibrate(args, spec, level: str, run, slow: SlowForward, measured_ratio, pair_ratios, log) -> WaitFactor:
    """The first k: a guess from the share of B's time in forward passes with the delay off,
    then `--calibration-steps` full interleaved runs with the delay on, each a measured B/A
    ratio and one fixed-point step (see WaitFactor). The slow runs go on stepping."""
    slow.factor = 0.0
    before_s = slow.seconds
    candidate, _, _ = run(spec.model_copy(update={"warmup_requests": 0, "trials": 6}))
    wall = sum(t["wall_s"] for t in candidate["samples"]["perf"][level])
    share = min((slow.seconds - before_s) / wall, 1.0)
    wait = WaitFactor(args.slowdown, _gap(args.slowdown) / share)
    first = wait.k
    steps = []
    for step in range(args.calibration_steps):
        slow.factor = wait.k
        waited_s, forward_s = slow.waited_s, slow.seconds
        candidate, baseline, seconds = run()
        ratio = measured_ratio(candidate, baseline)
        wall = sum(t["wall_s"] for t in candidate["samples"]["perf"][level])
        steps.append({
            "factor": round(wait.k, 4), "ratio": round(ratio, 4), "drop": round(1 - ratio, 4),
            "pair_sd": round(statistics.stdev(pair_ratios(candidate, baseline)), 4), "seconds": round(seconds, 1),
            # B's time in waits and in forward passes (warm-up included) per second of its trials
            "wait_share": round((slow.waited_s - waited_s) / wall, 4),
            "forward_share": round((slow.seconds - forward_s) / wall, 4),
        })
        wait.step(1 - ratio)
        log(f"calibration {step + 1}/{args.calibration_steps}: k {steps[-1]['factor']:.3f} → B/A {ratio:.3f} "
            f"(drop {1 - ratio:.3f}, asked {args.slowdown:.3f}) in {seconds:.1f} s; next k {wait.k:.3f}")
    wait.calibration = {
        "forward_share": round(share, 4),
        "first_factor": round(first, 4),
        "steps": steps,
        "factor": round(wait.k, 4),
    }
    return wait


def _wilson(k: int, n: int) -> list[float]:
    from scipy.stats import binomtest

    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    return [round(ci.low, 4), round(ci.high, 4)]


if __name__ == "__main__":
    main()
