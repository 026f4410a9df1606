"""`run_bench`: measure a model (perf, quality, safety), compare with a baseline, gate.

    result = run_bench("tiny-cv@prod", BenchSpec(gates=[...]), name="tiny-cv", out_dir="bench/tiny-cv",
                       baseline="bench/baseline.json")
    result.exit_code   # 0 pass, 1 regression

The baseline is either a saved report (`baseline=`), or a second model measured in the
same run (`baseline_model=`) with its perf trials interleaved with the candidate's, which
makes relative speed gates paired and immune to slow drift of the machine.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cvml.bench.fingerprint import fingerprint
from cvml.bench.gates import GateResult, check_metric_names, evaluate_gates
from cvml.bench.perf import metric_names
from cvml.bench.report import attach_gates, build_report, compare_to_baseline, load_report, write_report
from cvml.bench.sweep import Side, blocks_per_run, measure_perf, plan_levels
from cvml.bench.workload import PERF_PROMPTS, perf_prompts, synthetic_records, workload_digest
from cvml.errors import ConfigError
from cvml.progress import OnProgress, Phase
from cvml.recipe import BenchSpec, Recipe, ServeSpec


@dataclass
class BenchResult:
    """The candidate's report (with gates and verdict), where it was written, and the baseline's."""

    report: dict[str, Any]
    out_dir: Path
    files: dict[str, str]
    gates: list[GateResult]
    baseline_report: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not any(g.failed for g in self.gates)

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1

    def summary(self) -> dict[str, Any]:
        """The report without raw samples, plus exit code and files (what `--json` prints)."""
        brief = {k: v for k, v in self.report.items() if k not in ("samples", "quality", "bias")}
        return {"exit_code": self.exit_code, "out_dir": str(self.out_dir), **brief}


@dataclass
class _Loaded:
    side: Side
    loaded: Any = None  # LoadedModel when the model is in this process
    engine: Any = None


def resolve_eval_data(spec: BenchSpec, recipe: Recipe | None, name: str) -> str | None:
    """bench.eval_data ({name} filled in), else the recipe's curated dataset (its test split)."""
    if spec.eval_data:
        return spec.eval_data.format(name=name)
    if recipe is not None and recipe.curate is not None:
        return str(recipe.curate_output)
    return None


def run_bench(
    model: str,
    spec: BenchSpec,
    *,
    name: str,
    out_dir: str | Path,
    baseline: str | Path | None = None,
    baseline_model: str | None = None,
    url: str | None = None,
    perf: bool = True,
    quality: bool = True,
    eval_data: str | Path | None = None,
    serve: ServeSpec | None = None,
    recipe: dict[str, Any] | None = None,
    seed: int = 0,
    on_progress: OnProgress | None = None,
) -> BenchResult:
    """Bench `model`, write the report folder, and evaluate the gates.

    Args:
        model: a registry reference or model folder (with `url`: the model id sent to the server).
        baseline: a saved report.json to compare with.
        baseline_model: a second model measured in this run, trials interleaved (in-process only).
        url: measure perf against this OpenAI-compatible server instead of an in-process engine;
            quality, when on, still loads `model` here.
        perf, quality: which parts to measure (quality includes the bias probe when spec.bias_probe).
        eval_data: eval records (.jsonl/.parquet or a curated folder); needed for quality.
        serve: engine settings (batch size, queue, batch wait); default ServeSpec().
        on_progress: reports the phases perf, quality (per side) and bias probe.

    Raises:
        ConfigError: contradictory options, no eval data for quality, gates naming unknown
            metrics or lacking the evidence a relative bound needs.
        ModelError, DataError: the model or the eval data cannot be loaded.
    """
    _check_options(perf, quality, baseline, baseline_model, url, eval_data)
    serve = serve or ServeSpec()
    unmeasured = {"perf": "--no-perf", "load_s": "--no-perf", "resources": "--no-perf"} if not perf else {}
    if not quality:
        unmeasured.update({"quality": "--no-quality", "bias": "--no-quality"})
    elif not spec.bias_probe:
        unmeasured["bias"] = "bench.bias_probe is off"
    check_metric_names(spec.gates, _planned_metrics(spec, perf, quality))
    baseline_report = load_report(baseline) if baseline else None

    from cvml.evaluation.quality import load_eval_records

    records = load_eval_records(eval_data, limit=spec.eval_samples) if eval_data else None
    prompts = perf_prompts(records or synthetic_records(PERF_PROMPTS, seed))
    out_dir = Path(out_dir)
    run_id = uuid.uuid4().hex if baseline_model else None
    labels = [("candidate", model)] + ([("baseline", baseline_model)] if baseline_model else [])

    from cvml.bench.resources import PeakMemory
    from cvml.modelio import pick_device

    device = pick_device(spec.device) if not url else "remote"
    with PeakMemory(cuda=device == "cuda") as memory:
        sides = [_open(label, ref, spec, serve, url, perf=perf, quality=quality) for label, ref in labels]
        try:
            samples = {}
            if perf:
                blocks = Phase(on_progress, "perf", blocks_per_run(spec, len(sides)))
                samples = measure_perf([s.side for s in sides], prompts, spec, seed=seed,
                                       on_block=lambda label: blocks.advance(info=label))
            qualities = {s.side.label: _quality(s, records, spec, on_progress) for s in sides} if quality else {}
            safeties = {label: _safety(q, sides[i], records, spec, on_progress)
                        for i, (label, q) in enumerate(qualities.items())}
            bias = _bias(sides[0], spec, seed, on_progress) if quality and spec.bias_probe else None
        finally:
            for s in sides:
                if s.engine is not None:
                    s.engine.stop()

    config = _config(spec, prompts, serve, url, quality, eval_data, records)
    in_process = perf and not url
    reports = {
        s.side.label: build_report(
            name=name, role=s.side.label, model=_model_info(s, ref, url), fingerprint=_fingerprint(s, device, url),
            config=config, pairing={"run_id": run_id, "role": s.side.label, "interleaved": run_id is not None},
            perf=samples.get(s.side.label), load_s=s.loaded.load_s if in_process else None,
            resources=memory.to_metrics() if in_process else None, quality=qualities.get(s.side.label),
            safety=safeties.get(s.side.label) if quality else None,
            bias=bias if s.side.label == "candidate" else None,
            warnings=["peak memory covers both models (--baseline-model loads them into one process)"]
            if baseline_model and in_process else None,
        )
        for s, (_, ref) in zip(sides, labels)
    }
    report = reports["candidate"]
    base_report = reports.get("baseline") or baseline_report
    warnings = []
    if base_report is not None:
        source = str(baseline) if baseline else f"--baseline-model {baseline_model} (interleaved in this run)"
        warnings = compare_to_baseline(report, base_report, source)
    if "baseline" in reports:
        write_report(reports["baseline"], out_dir / "baseline")
    try:
        gates = evaluate_gates(spec.gates, report, base_report, confidence=spec.confidence, unmeasured=unmeasured)
    except ConfigError as exc:
        # The measurements are still worth keeping: write them, then report the problem.
        report["warnings"].append(f"gates not evaluated: {exc.message}")
        write_report(report, out_dir, base_report)
        raise
    attach_gates(report, gates)
    files = write_report(report, out_dir, base_report)
    _manifest(out_dir, report, recipe, eval_data, seed)
    return BenchResult(report, out_dir, files, gates, base_report, warnings)


def _model_info(s: _Loaded, ref: str, url: str | None) -> dict[str, Any]:
    info = s.loaded.info() if s.loaded is not None else {"ref": ref}
    return {**info, "url": url} if url else info


def _fingerprint(s: _Loaded, device: str, url: str | None) -> dict[str, Any]:
    if url:
        return fingerprint(device=device, dtype="remote", target="url")
    return fingerprint(device=s.loaded.device, dtype=s.loaded.dtype, target="engine")


def _check_options(perf, quality, baseline, baseline_model, url, eval_data) -> None:
    if not perf and not quality:
        raise ConfigError("--no-perf and --no-quality leave nothing to measure", hint="Drop one of them.")
    if baseline and baseline_model:
        raise ConfigError(
            "give either --baseline (a saved report) or --baseline-model (measured in this run), not both"
        )
    if url and baseline_model:
        raise ConfigError(
            "--baseline-model interleaves two in-process engines and cannot be combined with --url",
            hint="Bench the baseline server once and pass its report with --baseline.",
        )
    if quality and not eval_data:
        raise ConfigError(
            "quality needs eval records, and none are configured",
            hint="Set bench.eval_data (e.g. --set bench.eval_data=data/tiny-cv), use a recipe with a curate "
            "section, or pass --no-quality.",
        )


def _planned_metrics(spec: BenchSpec, perf: bool, quality: bool) -> dict[str, Any]:
    """A metrics tree of what this run will produce, to check gate names before running."""
    planned: dict[str, Any] = {}
    if perf:
        planned["load_s"] = None
        planned["perf"] = {level.name: dict.fromkeys(metric_names()) for level in plan_levels(spec)}
        planned["resources"] = {"peak_rss_mb": None, "peak_gpu_mb": None}
    if quality:
        from cvml.evaluation.quality import METRICS

        planned["quality"] = dict.fromkeys((*METRICS, "n", "mean_words"))
        planned["safety"] = dict.fromkeys(_safety_names(spec))
    return planned


def _open(label: str, ref: str, spec: BenchSpec, serve: ServeSpec, url: str | None, *, perf: bool, quality: bool) -> _Loaded:
    """Load a model (when it is measured or scored here) and start what perf requests go to."""
    from cvml.bench.targets import EngineTarget, HttpTarget

    loaded = None
    if quality or not url:
        from cvml._quiet import quiet_libraries
        from cvml.modelio import load_for_inference, pick_device, resolve_model, serving_dtype

        quiet_libraries()
        device = pick_device(spec.device)  # measured as `cvml serve` would load it
        model_ref = resolve_model(ref)
        loaded = load_for_inference(model_ref, device=device, dtype=serving_dtype(spec.dtype, device, model_ref.path))
    if url:
        target = HttpTarget(
            url, ref, max_new_tokens=spec.max_new_tokens, ignore_eos=spec.ignore_eos, timeout_s=spec.request_timeout_s,
            max_connections=max(spec.concurrency),
        )
        return _Loaded(Side(label, target), loaded)
    if not perf:
        return _Loaded(Side(label, None), loaded)
    from cvml.serve.engine import Engine

    engine = Engine(loaded, max_batch_size=serve.max_batch_size, max_queue=serve.max_queue, batch_wait_ms=serve.batch_wait_ms)
    engine.start()
    target = EngineTarget(
        engine, loaded.tokenizer, max_new_tokens=spec.max_new_tokens, ignore_eos=spec.ignore_eos,
        timeout_s=spec.request_timeout_s,
    )
    return _Loaded(Side(label, target), loaded, engine)


def _quality(s: _Loaded, records, spec: BenchSpec, on_progress: OnProgress | None, grounding: str | None = None):
    from cvml.evaluation import evaluate_quality

    grounding = spec.grounding if grounding is None else grounding
    phase = f"quality ({s.side.label})" if grounding == spec.grounding else f"quality ({s.side.label}, grounding off)"
    return evaluate_quality(s.loaded, records, max_new_tokens=spec.max_new_tokens, grounding=grounding,
                            on_progress=None if on_progress is None else lambda e: on_progress(replace(e, phase=phase)))


def _safety_names(spec: BenchSpec) -> list[str]:
    from cvml.evaluation.quality import SAFETY_METRICS

    compare = spec.grounding_compare and spec.grounding != "off"
    return [*SAFETY_METRICS, *([f"{m}_off" for m in SAFETY_METRICS] if compare else [])]


def _safety(quality, s: _Loaded, records, spec: BenchSpec, on_progress: OnProgress | None) -> dict[str, Any]:
    """The safety rates under the bench's grounding and, compared, with grounding off."""
    from cvml.evaluation.quality import SAFETY_METRICS

    safety = {m: quality.metrics[m] for m in SAFETY_METRICS}
    if spec.grounding_compare and spec.grounding != "off":
        free = _quality(s, records, spec, on_progress, grounding="off")
        safety.update({f"{m}_off": free.metrics[m] for m in SAFETY_METRICS})
    return safety


def _bias(s: _Loaded, spec: BenchSpec, seed: int, on_progress: OnProgress | None) -> dict:
    from cvml.evaluation import run_bias_probe

    return run_bias_probe(
        s.loaded, spec.bias_names_dir, n_templates=spec.bias_templates, max_new_tokens=spec.max_new_tokens, seed=seed,
        on_progress=on_progress,
    )


def _config(spec: BenchSpec, prompts, serve: ServeSpec, url, quality, eval_data, records) -> dict[str, Any]:
    engine = {"url": url} if url else {
        "max_batch_size": serve.max_batch_size, "max_queue": serve.max_queue, "batch_wait_ms": serve.batch_wait_ms,
    }
    return {
        "levels": [level.name for level in plan_levels(spec)],
        "concurrency": spec.concurrency,
        "poisson_rate": spec.poisson_rate,
        "requests_per_level": spec.requests_per_level,
        "warmup_requests": spec.warmup_requests,
        "trials": spec.trials,
        "max_new_tokens": spec.max_new_tokens,
        "ignore_eos": spec.ignore_eos,
        "confidence": spec.confidence,
        "engine": engine,
        "workload_sha256": workload_digest(prompts, spec.max_new_tokens, spec.ignore_eos),
        "perf_prompts": "eval data" if records else "synthetic",
        "eval_data": str(eval_data) if eval_data else None,
        "eval_examples": len(records) if records and quality else None,
        "grounding": spec.grounding if quality else None,
    }


def _manifest(out_dir: Path, report: dict, recipe: dict | None, eval_data, seed: int) -> None:
    from cvml.manifest import build_manifest, write_manifest

    write_manifest(out_dir, build_manifest(
        "bench",
        inputs={"eval_data": eval_data} if eval_data and Path(eval_data).exists() else None,
        recipe=recipe,
        seed=seed,
        extra={"model": report["model"], "verdict": report["verdict"], "report": "report.json"},
    ))
