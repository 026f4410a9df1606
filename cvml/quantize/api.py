"""`quantize(source, spec) -> QuantizeResult`: quantize a model, save it as a folder that
serve, bench and abtest load like any other, and measure what it cost.

The order matters:
1. Load the source through `cvml.modelio` (LoRA adapters merged in memory), measure its
   perplexity and greedy answers on validation records.
2. Quantize in place, save (before any inference forward: GPT-QModel's CPU kernel repacks
   its buffers on the first one), write tokenizer, chat template and generation config.
3. Reload the folder through `cvml.modelio.load_for_inference` — the path serving takes —
   and require its logits to match the in-memory quantized model's (a saved checkpoint
   that silently differs is the failure this guards against).
4. Measure the reloaded model exactly as the source; write the report and manifest;
   register it as a child of its source when the source is registered and the
   perplexity guard passed.
"""

from __future__ import annotations

import gc
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cvml.errors import ConfigError, DataError, QuantizeError
from cvml.progress import OnProgress, Stages
from cvml.quantize.registration import GatedReport, register_child

# Same weights and kernels on both sides, so logits agree to rounding; a wrong zero point
# or a mislabelled checkpoint moves them by tenths or more. Half precision rounds coarser.
ROUNDTRIP_RTOL = {"float32": 1e-4, "float16": 1e-2, "bfloat16": 2e-2}
_LIBRARIES = ("gptqmodel", "optimum", "torch", "transformers")
_PARAMS = {
    "gptq": ("bits", "group_size", "sym", "desc_act", "damp_percent"),
    "rtn": ("bits", "group_size", "sym"),
    "int8": ("bits",),
}


@dataclass
class QuantizeResult(GatedReport):
    """Everything `cvml quantize` reports; `as_dict()` is quantize_report.json."""

    output_dir: str
    method: str
    params: dict[str, Any]
    source: dict[str, Any]
    data: dict[str, Any]
    perplexity: dict[str, Any]
    size: dict[str, Any]
    memory: dict[str, Any]
    load_s: dict[str, float]
    roundtrip: dict[str, Any]
    gate: dict[str, Any]
    wall_s: dict[str, float]
    device: str
    quality: dict[str, Any] | None = None
    registered: str | None = None
    not_registered_because: str | None = None
    files: dict[str, str] = field(default_factory=dict)


def quantize(
    source: str | Path,
    spec,
    *,
    recipe=None,
    output: str | Path | None = None,
    overwrite: bool = False,
    seed: int = 42,
    on_progress: OnProgress | None = None,
    registry=None,
) -> QuantizeResult:
    """Quantize `source` as `spec` says, save it, reload it, and measure the cost.

    Args:
        source: a registry reference (`name`, `name@3`, `name@prod`), a model folder, or a
            finetune run folder (its merged/, model/ or adapter/).
        spec: a `cvml.recipe.QuantizeSpec`.
        recipe: the `Recipe` it came from, if any (its name, seed and data section are used).
        output: the folder to write (default: spec.output formatted with name/method/bits).
        overwrite: replace an existing non-empty output folder; one that holds a registered
            version is kept as it is and the model goes to a new folder beside it
            (`<output>-<UTC time>`, see `result.output_dir`).
        seed: seeds the calibration draw.
        on_progress: reports each stage (loading, perplexity, answers, quantizing, saving, reloading).
        registry: a `Registry` (default: the one under CVML_HOME).

    Returns:
        The result; `result.passed` is False when perplexity rose by more than
        spec.max_ppl_increase (the folder and report are still written; nothing is registered).

    Raises:
        ConfigError: the method cannot run on the device, or the output folder exists.
        QuantizeError: a missing optional dependency, incompatible layer shapes, or a saved
            model whose logits differ from the in-memory quantized model.
        ModelError, RegistryError: the source cannot be found or loaded.
        DataError: no calibration or validation data.
    """
    from cvml.modelio import load_for_inference, pick_device, resolve_model
    from cvml.quantize import quality
    from cvml.quantize.calibration import calibration_batches, load_data, source_manifest
    from cvml.quantization import get_method
    from cvml.registry import Registry
    from cvml.data.encode import encode_records

    from cvml._quiet import quiet_libraries

    quiet_libraries()
    started = time.perf_counter()
    method = get_method(spec.method)
    backend = method.module()
    registry = registry or Registry()
    ref = resolve_model(source, registry)
    if ref.kind == "quantized":
        made_from = (ref.manifest.get("source") or {}).get("ref")
        raise QuantizeError(
            f"{ref.ref} is already quantized ({(ref.manifest.get('quantize') or {}).get('method')})",
            hint=f"Quantize the model it was made from{': ' + made_from if made_from else ''}.",
        )
    device = pick_device(spec.device)
    if device.split(":")[0] not in method.devices:
        raise ConfigError(
            f"method {method.name} runs on {' or '.join(method.devices)}, not {device}",
            hint="Use --device cpu for int8, or --method gptq on a GPU.",
        )
    name = recipe.name if recipe is not None else ref.name
    variant = spec.method if spec.method == "int8" else f"{spec.method}{spec.bits}"
    out_dir = Path(output or spec.output.format(name=name, method=spec.method, bits=spec.bits, variant=variant))
    out_dir = _prepare(out_dir, overwrite, ref.path, registry)
    made_by = source_manifest(ref.path, ref.manifest)
    data = load_data(spec, recipe, made_by, seed)

    bar = Stages(on_progress)
    bar.start("loading the source model")
    src = load_for_inference(ref, device=device, dtype="float16" if device.startswith("cuda") else "float32")
    tokenizer, context = src.tokenizer, src.context_length
    examples, too_long = encode_records(tokenizer, data.evaluation, context)
    if not examples:
        raise DataError(
            f"every validation record is longer than the model's context ({context} tokens)",
            hint="Evaluate on curated data (cvml curate drops over-long rows).",
        )
    asked = quality.fits_context(tokenizer, data.evaluation[: spec.quality_samples], spec.max_new_tokens, context)
    before = _measure(src, examples, asked, spec, bar, "source")
    fp16_bytes, linears = quality.fp16_bytes(src.model), quality.linear_sizes(src.model)
    rows, calibration_sha = calibration_batches(tokenizer, data.calibration, context) if method.calibrated else ([], None)

    bar.start(f"quantizing ({method.name}, {spec.bits} bits)")
    t0 = time.perf_counter()
    model = backend.quantize_model(src.model, tokenizer, rows, spec)
    quantize_s = time.perf_counter() - t0
    bar.start("saving")
    fmt = backend.save_model(model, out_dir, spec)
    tokenizer.save_pretrained(out_dir)
    model.generation_config.save_pretrained(out_dir)
    manifest = _manifest(
        out_dir, ref, made_by, src.chat_template_sha256, spec, fmt, data, calibration_sha, recipe, seed
    )

    bar.start("reloading through modelio")
    probe = [example.input_ids for example in examples[:2]]
    expected = _logits(model.eval(), probe, device)
    del model, src
    gc.collect()
    loaded = load_for_inference(out_dir, device=device, registry=registry)
    roundtrip = _check_roundtrip(expected, _logits(loaded.model, probe, device), loaded.dtype, out_dir)
    after = _measure(loaded, examples, asked, spec, bar, "quantized")
    bar.finish()

    increase = after["ppl"]["ppl"] / before["ppl"]["ppl"] - 1.0
    passed = spec.max_ppl_increase is None or increase <= spec.max_ppl_increase
    q_bytes, layers = quality.weight_bytes(out_dir), quality.quantized_layers_bytes(out_dir, linears)
    result = QuantizeResult(
        output_dir=str(out_dir),
        method=method.name,
        params={**_params(spec), **fmt},
        source={"ref": ref.ref, "path": str(ref.path), "kind": ref.kind, "sha256": manifest["inputs"]["source_model"]["sha256"]},
        data={
            "origin": data.origin,
            "inputs": data.inputs,
            "calibration_samples": len(rows),
            "calibration_sha256": calibration_sha,
            "eval_examples": len(examples),
            "eval_too_long": len(too_long),
            **data.counts,
        },
        perplexity={"source": before["ppl"], "quantized": after["ppl"], "increase": increase},
        quality=_quality(asked, before["answers"], after["answers"]),
        size={
            "source_weights_bytes": quality.weight_bytes(ref.path),
            "quantized_weights_bytes": q_bytes,
            "quantized_folder_bytes": quality.folder_bytes(out_dir),
            "fp16_bytes": fp16_bytes,
            "ratio_vs_fp16": q_bytes / fp16_bytes,
            "quantized_layers": layers["layers"],
            "quantized_layers_ratio_vs_fp16": layers["bytes"] / max(layers["fp16_bytes"], 1),
        },
        memory={
            "source_resident_mb": before["resident_mb"],
            "quantized_resident_mb": after["resident_mb"],
            "peak_rss_mb": quality.peak_rss_mb(),
            "source_cuda_peak_mb": before["cuda_peak_mb"],
            "quantized_cuda_peak_mb": after["cuda_peak_mb"],
        },
        load_s={"source": before["load_s"], "quantized": after["load_s"]},
        roundtrip=roundtrip,
        gate={"max_ppl_increase": spec.max_ppl_increase, "passed": passed},
        wall_s={"quantize": quantize_s, "total": time.perf_counter() - started},
        device=device,
    )
    result.registered, result.not_registered_because = register_child(
        result, ref, manifest, spec, registry, kind="quantized", section="quantize", measured="quantized",
        report="quantize_report.json", metadata={"method": result.method, **result.params},
        reason=f"cvml quantize --method {result.method} --bits {result.params['bits']}",
    )
    from cvml.quantize.report import write_report

    write_report(result, manifest)
    return result


def _measure(loaded, examples, asked, spec, bar: Stages, label: str) -> dict[str, Any]:
    """Perplexity, greedy answers, memory and load time of one loaded model."""
    from cvml.quantize import quality

    device = loaded.device
    step = bar.start(f"{label} perplexity", len(examples)).advance
    _reset_cuda_peak(device)
    ppl = quality.perplexity(loaded.model, examples, device, step)
    bar.start(f"{label} answers")
    answers = quality.answers(loaded, asked, spec.max_new_tokens) if asked else None
    return {
        "ppl": ppl,
        "answers": answers,
        "resident_mb": quality.resident_bytes(loaded.model) / 2**20,
        "cuda_peak_mb": _cuda_peak_mb(device),
        "load_s": loaded.load_s,
    }


def _prepare(out_dir: Path, overwrite: bool, source: Path, registry) -> Path:
    """The empty folder to write: `out_dir`, emptied with `overwrite`, or a new folder beside
    it when `out_dir` holds a registered version (a version's files are never rewritten)."""
    from cvml.registry.integrity import new_folder_beside

    if source.resolve().is_relative_to(out_dir.resolve()):
        raise ConfigError(f"output folder {out_dir} holds the source model {source}", hint="Pass --out another folder.")
    if out_dir.exists() and any(out_dir.iterdir()):
        if not overwrite:
            raise ConfigError(
                f"output folder {out_dir} exists and is not empty",
                hint="Pass --overwrite to replace it (a registered model in it is kept; the new one goes to a new "
                "folder beside it), or --out another folder.",
            )
        if registry.registered_under(out_dir):
            out_dir = new_folder_beside(out_dir)
        else:
            shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir


def _params(spec) -> dict[str, Any]:
    """The recipe fields that shaped this method's result (the rest do not apply to it)."""
    return {key: getattr(spec, key) for key in _PARAMS[spec.method]}


def _manifest(out_dir, ref, made_by, template_sha, spec, fmt, data, calibration_sha, recipe, seed) -> dict[str, Any]:
    from cvml.manifest import build_manifest, library_versions, write_manifest
    from cvml.recipe import recipe_to_dict

    inputs: dict[str, Any] = {"source_model": ref.path, **data.inputs}
    base = made_by.get("base_model")
    if ref.kind == "adapter" and base and Path(base).exists():
        inputs["base_model"] = base
    manifest = build_manifest(
        "quantize",
        inputs=inputs,
        recipe=recipe_to_dict(recipe) if recipe is not None else {"quantize": spec.model_dump(mode="json")},
        seed=seed,
        extra={
            "chat_template_sha256": made_by.get("chat_template_sha256") or template_sha,
            "source": {"ref": ref.ref, "name": ref.name, "version": ref.version, "kind": ref.kind},
            "quantize": {"method": spec.method, **_params(spec), **fmt, "libraries": library_versions(_LIBRARIES)},
            "calibration": {"samples": len(data.calibration) if calibration_sha else 0, "sha256": calibration_sha,
                            "origin": data.origin},
        },
    )
    write_manifest(out_dir, manifest)
    return manifest


def _logits(model, rows: list[list[int]], device: str):
    import torch

    with torch.inference_mode():
        return [model(input_ids=torch.tensor([ids], device=device), use_cache=False).logits.float().cpu() for ids in rows]


def _check_roundtrip(expected, got, dtype: str, out_dir: Path) -> dict[str, Any]:
    """Raises QuantizeError when the reloaded model's logits differ beyond rounding."""
    diff = max(float((a - b).abs().max()) for a, b in zip(expected, got))
    scale = max(float(a.abs().max()) for a in expected)
    rtol = ROUNDTRIP_RTOL.get(dtype, 1e-2)
    if diff > rtol * max(scale, 1.0):
        raise QuantizeError(
            f"the model saved in {out_dir} does not reproduce the quantized model: logits differ by up to "
            f"{diff:.4g} (allowed {rtol * max(scale, 1.0):.2g})",
            hint="The checkpoint's format label and its weights disagree; report this with the manifest's library versions.",
        )
    return {"max_abs_logit_diff": diff, "max_abs_logit": scale, "rtol": rtol}


def _quality(records, src, quantized) -> dict[str, Any] | None:
    if not records:
        return None
    from cvml.quantize.quality import side_by_side

    samples = side_by_side(records, src["outputs"], quantized["outputs"])
    return {
        "source": src["metrics"],
        "quantized": quantized["metrics"],
        "identical_outputs": sum(s["same"] for s in samples) / len(samples),
        "samples": samples,
    }


def _reset_cuda_peak(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.reset_peak_memory_stats(device)


def _cuda_peak_mb(device: str) -> float | None:
    if not device.startswith("cuda"):
        return None
    import torch

    return torch.cuda.max_memory_allocated(device) / 2**20
