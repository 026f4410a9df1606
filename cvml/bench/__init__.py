"""cvml bench: speed, quality and safety of a model in one report, gated for CI.

`run_bench` measures, compares with a baseline and evaluates the gates; the parts:
loadgen/targets/sweep (load generation), perf/stats/gates (metrics and noise-aware
verdicts), quality (task metrics and the bias probe), report/plots/compare (what people
and CI read), fingerprint/resources (what the figures depend on).
"""

from cvml.bench.api import BenchResult, run_bench

__all__ = ["BenchResult", "run_bench"]
