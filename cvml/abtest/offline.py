"""Offline A/B: both models answer the same eval examples, then paired statistics per metric.

Pairing is what makes a small eval set informative: each example is answered by A and
by B, so how hard the example is cancels out of the difference. Per metric the report
gives the mean difference with a paired bootstrap interval, a paired test (the exact
sign test for 0/1 metrics, i.e. McNemar's; Wilcoxon signed-rank otherwise) and the
win/tie/loss counts; latency is compared the same way (seconds per example).

Generation is greedy with the same settings for both models, one example at a time and
alternating which model goes first, so per-example latencies are paired in time too and
slow drift of the machine hits both sides alike. Each arm decodes with its own grounding
(`grounding=("off", "strict")` compares the served, grounded candidate with a free
control); an arm with grounding on is also answered once with it off, so the report gives
its fabrication, PII-leak and harmful rates both ways.
"""

from __future__ import annotations

import difflib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cvml.abtest.decision import Comparison, Decision, Guardrail, Rule, decide, higher_is_better
from cvml.abtest.power import paired_sample_size
from cvml.abtest.stats import paired_bootstrap, sign_test, wilcoxon_test
from cvml.errors import ConfigError, DataError
from cvml.progress import OnProgress, Phase
from cvml.recipe import AbtestSpec

LATENCY = "latency_s"


@dataclass
class OfflineResult:
    """Everything an offline A/B found: models, per-metric comparisons, the decision, the pairs."""

    a: dict[str, Any]
    b: dict[str, Any]
    data: str
    comparisons: dict[str, Comparison]
    decision: Decision
    pairs: list[dict[str, Any]] = field(default_factory=list)  # id, task, outputs and metric values of A and B
    settings: dict[str, Any] = field(default_factory=dict)
    safety: dict[str, Any] = field(default_factory=dict)  # per arm: rates under its grounding and with it off

    @property
    def n(self) -> int:
        return len(self.pairs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "offline",
            "a": self.a,
            "b": self.b,
            "data": self.data,
            "n": self.n,
            "decision": self.decision.to_dict(),
            "metrics": {name: c.to_dict() for name, c in self.comparisons.items()},
            "safety": self.safety,
            "settings": self.settings,
        }


def offline_rule(spec: AbtestSpec) -> Rule:
    """The decision rule an offline A/B applies, from the recipe's abtest section."""
    return Rule(
        primary=spec.primary,
        mde=spec.mde,
        guardrails=tuple(Guardrail(g.metric, g.tolerance) for g in spec.guardrails),
        alpha=spec.alpha,
        power=spec.power,
        min_samples=spec.min_samples,
    )


def metrics_to_compare(spec: AbtestSpec, requested: Sequence[str] | None = None) -> list[str]:
    """The metrics an offline A/B reports: those asked for (or all), plus the primary and guardrails.

    Raises:
        ConfigError: a metric bench does not compute (with "did you mean").
    """
    from cvml.evaluation.quality import METRICS

    known = [*METRICS, LATENCY]
    wanted = list(requested or spec.metrics or known)
    wanted += [spec.primary, *(g.metric for g in spec.guardrails)]
    for name in wanted:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(f"unknown offline metric {name!r}", hint=f"{hint}metrics: {', '.join(known)}")
    return list(dict.fromkeys(wanted))


def compare_paired(
    rows_a: Sequence[Mapping[str, Any]],
    rows_b: Sequence[Mapping[str, Any]],
    metrics: Sequence[str],
    alpha: float = 0.05,
    n_resamples: int = 9999,
    seed: int = 0,
) -> dict[str, Comparison]:
    """Per-metric paired comparisons of B against A on examples matched by `id`.

    A pair counts for a metric only where the metric applies to both answers (e.g.
    keyword coverage needs a job ad); booleans count as 0/1.

    Raises:
        DataError: the two sides share no example id.
    """
    by_id = {row["id"]: row for row in rows_a}
    matched = [(by_id[row["id"]], row) for row in rows_b if row["id"] in by_id]
    if not matched:
        raise DataError("the two models' results share no example id", hint="Score both models on the same records.")
    comparisons = {}
    for metric in metrics:
        pairs = [(ra[metric], rb[metric]) for ra, rb in matched if ra.get(metric) is not None and rb.get(metric) is not None]
        if pairs:
            comparisons[metric] = paired_comparison(metric, np.asarray(pairs, dtype=float), alpha, n_resamples, seed)
    return comparisons


def paired_comparison(metric: str, pairs: np.ndarray, alpha: float, n_resamples: int, seed: int) -> Comparison:
    """One metric's comparison from an (n, 2) array of (A, B) values."""
    a, b = pairs[:, 0], pairs[:, 1]
    diffs = b - a
    interval = paired_bootstrap(diffs, 1 - alpha, n_resamples, seed)
    bounds = paired_bootstrap(diffs, 1 - 2 * alpha, n_resamples, seed)
    up = higher_is_better(metric)
    signs = sign_test(diffs if up else -diffs)
    binary = bool(np.isin(pairs, (0.0, 1.0)).all())
    pvalue = signs.pvalue if binary else wilcoxon_test(diffs)
    n = len(diffs)
    return Comparison(
        metric=metric,
        higher_is_better=up,
        n_a=n,
        n_b=n,
        mean_a=float(a.mean()),
        mean_b=float(b.mean()),
        diff=float(diffs.mean()),
        low=float(interval.low),
        high=float(interval.high),
        bound_low=float(bounds.low),
        bound_high=float(bounds.high),
        pvalue=float(pvalue),
        test="sign" if binary else "wilcoxon",
        interval="paired_bootstrap",
        sd=float(diffs.std(ddof=1)) if n > 1 else None,
        wins=int(signs.wins),
        ties=int(signs.ties),
        losses=int(signs.losses),
    )


def analyze_pairs(
    rows_a: Sequence[Mapping[str, Any]],
    rows_b: Sequence[Mapping[str, Any]],
    spec: AbtestSpec,
    metrics: Sequence[str] | None = None,
    seed: int = 0,
) -> tuple[dict[str, Comparison], Decision]:
    """Comparisons and the decision for per-example results of A and B (no model needed).

    Raises:
        ConfigError: unknown metric, or the primary metric was not measured.
        DataError: no shared example ids.
    """
    names = metrics_to_compare(spec, metrics)
    comparisons = compare_paired(rows_a, rows_b, names, spec.alpha, spec.bootstrap_resamples, seed)
    primary = comparisons.get(spec.primary)
    required = None
    if primary is not None and primary.sd:
        required = paired_sample_size(spec.mde, primary.sd, spec.alpha, spec.power)
    return comparisons, decide(comparisons, offline_rule(spec), required_n=required)


def run_offline(
    a: str,
    b: str,
    data: str | Path,
    spec: AbtestSpec | None = None,
    metrics: Sequence[str] | None = None,
    split: str = "test",
    device: str = "auto",
    seed: int = 0,
    on_progress: OnProgress | None = None,
    grounding: tuple[str, str] = ("off", "off"),
) -> OfflineResult:
    """Run an offline A/B: generate with both models on the same records, score, compare, decide.

    Args:
        a, b: model references (control, candidate): `name@prod`, a run folder, ...
        data: eval records (.jsonl/.parquet, or a curated folder whose `split` is read).
        spec: the recipe's abtest section (defaults when None).
        metrics: metrics to report (default: spec.metrics, else all).
        device: where both models run.
        seed: seed of the bootstrap resampling.
        on_progress: reports phase "answering" (examples done of total).
        grounding: decoding of A and B: "off", "numbers" or "strict" (`cvml.safety.grounding`).

    Raises:
        DataError, ModelError, RegistryError, ConfigError: from loading data and models,
            or an unknown metric.
    """
    from cvml.evaluation import generate_outputs, load_eval_records, score_outputs
    from cvml.evaluation.quality import SAFETY_METRICS
    from cvml.modelio import load_for_inference

    spec = spec or AbtestSpec()
    names = metrics_to_compare(spec, metrics)  # fail on a typo before loading anything
    records = load_eval_records(data, split=split, limit=spec.eval_samples)
    models = [load_for_inference(ref, device=device) for ref in (a, b)]
    outputs: list[list[str]] = [[], []]
    latency: list[list[float]] = [[], []]
    for model, mode in zip(models, grounding):  # warm-up: first calls pay one-off allocation costs
        generate_outputs(model, records[:1], max_new_tokens=spec.max_new_tokens, batch_size=1, grounding=mode)
    answered = Phase(on_progress, "answering", len(records))
    for i, record in enumerate(records):
        order = (0, 1) if i % 2 == 0 else (1, 0)
        for side in order:
            start = time.perf_counter()
            text = generate_outputs(
                models[side], [record], max_new_tokens=spec.max_new_tokens, batch_size=1, grounding=grounding[side]
            )[0]
            latency[side].append(time.perf_counter() - start)
            outputs[side].append(text)
        answered.advance()
    scored = [score_outputs(records, outputs[side]) for side in (0, 1)]
    rows = [result.per_example for result in scored]
    safety = {}
    for side, arm in enumerate("ab"):
        rates = {"grounding": grounding[side], **{m: scored[side].metrics[m] for m in SAFETY_METRICS}}
        if grounding[side] != "off":
            free = generate_outputs(models[side], records, max_new_tokens=spec.max_new_tokens, phase="grounding off")
            rates["off"] = {m: score_outputs(records, free).metrics[m] for m in SAFETY_METRICS}
        safety[arm] = rates
    for side in (0, 1):
        for row, seconds in zip(rows[side], latency[side]):
            row[LATENCY] = seconds
    comparisons, decision = analyze_pairs(rows[0], rows[1], spec, names, seed=seed)
    pairs = [
        {
            "id": ra["id"],
            "task": ra["task"],
            "output_a": outputs[0][i],
            "output_b": outputs[1][i],
            **{name: [ra.get(name), rb.get(name)] for name in names},
        }
        for i, (ra, rb) in enumerate(zip(*rows))
    ]
    settings = {
        "split": split,
        "eval_samples": spec.eval_samples,
        "max_new_tokens": spec.max_new_tokens,
        "decoding": "greedy",
        "grounding": {"a": grounding[0], "b": grounding[1]},
        "device": models[0].device,
        "alpha": spec.alpha,
        "bootstrap_resamples": spec.bootstrap_resamples,
        "seed": seed,
    }
    info = [{**m.info(), "requested": ref} for m, ref in zip(models, (a, b))]
    return OfflineResult(info[0], info[1], str(data), comparisons, decision, pairs, settings, safety)
