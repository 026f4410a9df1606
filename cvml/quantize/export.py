"""`export(source, spec) -> ExportResult`: write a model for another runtime — an OpenVINO
GenAI folder or a GGUF file for llama.cpp and Ollama — and measure what it cost.

Same discipline as `cvml quantize`: the source is loaded through `cvml.modelio` (LoRA
merged), its perplexity measured on validation records; the export is read back *by the
runtime that will serve it* where that runtime is installed (OpenVINO compiles the folder;
llama.cpp's Python binding loads the GGUF) and measured the same way; the report says what
changed, the `max_ppl_increase` guard decides, and a passing export of a registered source
is registered as its child (kind `exported`). The folder keeps the model's tokenizer files
and chat template, so cvml builds prompts for it exactly as for the source.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cvml.errors import DataError, QuantizeError
from cvml.progress import OnProgress, Stages
from cvml.quantize.registration import GatedReport, register_child

GGUF_FILE = "model.gguf"
REPORT_JSON = "export_report.json"
_LIBRARIES = {"openvino": ("openvino", "openvino-genai", "openvino-tokenizers", "nncf"), "gguf": ("gguf", "llama-cpp-python")}
_PROBE_ROWS = 4


@dataclass
class ExportResult(GatedReport):
    """Everything `cvml export` reports; `as_dict()` is export_report.json."""

    output_dir: str
    format: str
    weights: str
    params: dict[str, Any]
    source: dict[str, Any]
    data: dict[str, Any]
    perplexity: dict[str, Any]
    logits: dict[str, Any]
    runtime: dict[str, Any]
    size: dict[str, Any]
    gate: dict[str, Any]
    wall_s: dict[str, float]
    registered: str | None = None
    not_registered_because: str | None = None
    files: dict[str, str] = field(default_factory=dict)


def export(
    source: str | Path,
    spec,
    *,
    recipe=None,
    output: str | Path | None = None,
    overwrite: bool = False,
    seed: int = 42,
    on_progress: OnProgress | None = None,
    registry=None,
) -> ExportResult:
    """Export `source` as `spec` (a `cvml.recipe.ExportSpec`) says, read it back, measure it.

    Raises:
        QuantizeError: the runtime's packages are missing, or the source is already quantized.
        ConfigError: the output folder exists (without `overwrite`).
        ModelError, RegistryError, DataError: as `cvml quantize`.
    """
    from cvml._quiet import quiet_libraries
    from cvml.data.encode import encode_records
    from cvml.modelio import load_for_inference, resolve_model
    from cvml.quantize import quality
    from cvml.quantize.api import _prepare
    from cvml.quantize.calibration import calibration_batches, load_data, source_manifest
    from cvml.registry import Registry

    quiet_libraries()
    _require(spec.format)
    started = time.perf_counter()
    registry = registry or Registry()
    ref = resolve_model(source, registry)
    if ref.kind == "quantized":
        made_from = (ref.manifest.get("source") or {}).get("ref")
        raise QuantizeError(
            f"{ref.ref} is quantized for cvml's engine; export the full-precision model",
            hint=f"Export the model it was made from{': ' + made_from if made_from else ''}.",
        )
    name = recipe.name if recipe is not None else ref.name
    out_dir = Path(output or spec.output.format(name=name, format=spec.format, weights=spec.weights))
    out_dir = _prepare(out_dir, overwrite, ref.path, registry)
    made_by = source_manifest(ref.path, ref.manifest)
    data = load_data(spec, recipe, made_by, seed)

    bar = Stages(on_progress)
    bar.start("loading the source model")
    src = load_for_inference(ref, device="cpu", dtype="float32")
    model, tokenizer = src.model, src.tokenizer
    examples, too_long = encode_records(tokenizer, data.evaluation, src.context_length)
    if not examples:
        raise DataError(
            f"every validation record is longer than the model's context ({src.context_length} tokens)",
            hint="Evaluate on curated data (cvml curate drops over-long rows).",
        )
    step = bar.start("source perplexity", len(examples)).advance
    before = quality.perplexity(model, examples, "cpu", step)
    probe = [example.input_ids for example in examples[:_PROBE_ROWS]]
    expected = _logits(model, probe)

    bar.start(f"writing {spec.format} ({spec.weights})")
    t0 = time.perf_counter()
    if spec.format == "gguf":
        from cvml.quantize import gguf_format

        tensor_types = gguf_format.write(
            model, tokenizer, tokenizer.chat_template, out_dir / GGUF_FILE, outtype=spec.weights, name=name
        )
        params: dict[str, Any] = {"outtype": spec.weights, "tensor_types": tensor_types, "architecture": model.config.model_type}
        calibration_sha = None
    else:
        from cvml.quantize import openvino_format

        rows, calibration_sha = [], None
        if spec.weights == "int4" and spec.calibration_samples:
            batches, calibration_sha = calibration_batches(tokenizer, data.calibration, src.context_length)
            rows = [batch["input_ids"][0].tolist() for batch in batches]
        params = openvino_format.write_folder(model, tokenizer, out_dir, spec.weights, group_size=spec.group_size,
                                              calibration=rows)
    export_s = time.perf_counter() - t0
    if spec.format == "gguf":  # the tokenizer and config beside the file: cvml builds prompts from them
        tokenizer.save_pretrained(out_dir)
        model.config.save_pretrained(out_dir)
        model.generation_config.save_pretrained(out_dir)
    source_bytes = quality.weight_bytes(ref.path)
    fp16_bytes = quality.fp16_bytes(model)
    del model, src

    bar.start("reading it back")
    reader, runtime = _reader(spec.format, out_dir, ref)
    if hasattr(reader, "tokenize"):  # the runtime tokenizes text itself: it must cut it as the model's tokenizer
        runtime["tokenizer_matches"] = _same_tokens(reader, tokenizer, [tokenizer.decode(ids) for ids in probe])
    got = _logits(reader, probe)
    step = bar.start("exported perplexity", len(examples)).advance
    after = quality.perplexity(reader, examples, "cpu", step)
    bar.finish()

    increase = after["ppl"] / before["ppl"] - 1.0
    passed = spec.max_ppl_increase is None or increase <= spec.max_ppl_increase
    exported_bytes = _exported_bytes(spec.format, out_dir)
    manifest = _manifest(out_dir, ref, made_by, spec, params, data, calibration_sha, recipe, seed)
    result = ExportResult(
        output_dir=str(out_dir),
        format=spec.format,
        weights=spec.weights,
        params=params,
        source={"ref": ref.ref, "path": str(ref.path), "kind": ref.kind, "sha256": manifest["inputs"]["source_model"]["sha256"]},
        data={"origin": data.origin, "inputs": data.inputs, "calibration_sha256": calibration_sha,
              "eval_examples": len(examples), "eval_too_long": len(too_long)},
        perplexity={"source": before, "exported": after, "increase": increase},
        logits=_compare(expected, got),
        runtime=runtime,
        size={"source_weights_bytes": source_bytes, "exported_weights_bytes": exported_bytes, "fp16_bytes": fp16_bytes,
              "ratio_vs_fp16": exported_bytes / fp16_bytes},
        gate={"max_ppl_increase": spec.max_ppl_increase, "passed": passed},
        wall_s={"export": export_s, "total": time.perf_counter() - started},
    )
    result.registered, result.not_registered_because = register_child(
        result, ref, manifest, spec, registry, kind="exported", section="export", measured="exported",
        report=REPORT_JSON, metadata={"format": result.format, "weights": result.weights},
        reason=f"cvml export {result.format} --weights {result.weights}",
    )
    _write_report(result, manifest)
    return result


def _require(fmt: str) -> None:
    import importlib.util

    needed = {"openvino": ("openvino", "openvino_genai", "openvino_tokenizers", "nncf"), "gguf": ("gguf",)}[fmt]
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if missing:
        raise QuantizeError(
            f"exporting to {fmt} needs {', '.join(missing)}, which is not installed",
            hint=f"pip install 'cvml[{fmt}]'",
        )


def _reader(fmt: str, out_dir: Path, ref):
    """The exported model as its runtime computes it, called like a transformers LM, and
    what the runtime check found."""
    if fmt == "openvino":
        from cvml.quantize.openvino_format import CompiledLM

        return CompiledLM(out_dir), {"runtime": "openvino", "loaded": True}
    from cvml.quantize import gguf_format

    metadata = gguf_format.read_metadata(out_dir / GGUF_FILE)
    template_ok = metadata["chat_template"] == _chat_template(out_dir)
    if not template_ok:
        raise QuantizeError(f"the chat template read back from {out_dir / GGUF_FILE} differs from the model's")
    found = {"runtime": "gguf-reader", "loaded": True, "chat_template_matches": template_ok, **metadata}
    found.pop("chat_template")
    try:
        from cvml.quantize.gguf_format import LlamaCppLM

        return LlamaCppLM(out_dir / GGUF_FILE), {**found, "runtime": "llama.cpp"}
    except ImportError:  # llama-cpp-python not installed: the file's own tensors, dequantized
        from transformers import AutoConfig, AutoModelForCausalLM

        config = AutoConfig.from_pretrained(out_dir)
        model = AutoModelForCausalLM.from_config(config)
        model.load_state_dict(gguf_format.read_state(out_dir / GGUF_FILE, config), strict=False)
        model.tie_weights()
        return model.eval(), found


def _same_tokens(reader, tokenizer, texts: list[str]) -> bool:
    """Raises QuantizeError when the runtime tokenizes a text differently from the model's tokenizer."""
    for text in texts:
        expected = tokenizer(text, add_special_tokens=False)["input_ids"]
        if list(reader.tokenize(text)) != list(expected):
            raise QuantizeError(
                "the exported file tokenizes text differently from the model's tokenizer",
                hint="Its pre-tokenizer is not one the runtime knows by this name; report the tokenizer's type.",
            )
    return True


def _chat_template(folder: Path) -> str:
    from cvml.modelio import load_inference_tokenizer

    return load_inference_tokenizer(folder).chat_template


def _logits(model, rows):
    import torch

    with torch.inference_mode():
        return [model(input_ids=torch.tensor([ids])).logits[0].float() for ids in rows]


def _compare(expected, got) -> dict[str, Any]:
    """How far the runtime's logits are from the source's: the largest difference, and how
    often both pick the same next token (what greedy decoding sees)."""
    diff = max(float((a - b).abs().max()) for a, b in zip(expected, got))
    same = sum(int((a.argmax(-1) == b.argmax(-1)).sum()) for a, b in zip(expected, got))
    total = sum(a.shape[0] for a in expected)
    return {"max_abs_diff": diff, "max_abs_logit": max(float(a.abs().max()) for a in expected),
            "top1_agreement": same / total, "positions": total}


def _exported_bytes(fmt: str, out_dir: Path) -> int:
    if fmt == "gguf":
        return (out_dir / GGUF_FILE).stat().st_size
    return (out_dir / "openvino_model.bin").stat().st_size


def _manifest(out_dir, ref, made_by, spec, params, data, calibration_sha, recipe, seed) -> dict[str, Any]:
    from cvml.manifest import build_manifest, library_versions, write_manifest
    from cvml.recipe import recipe_to_dict

    manifest = build_manifest(
        "export",
        inputs={"source_model": ref.path, **data.inputs},
        recipe=recipe_to_dict(recipe) if recipe is not None else {"export": spec.model_dump(mode="json")},
        seed=seed,
        extra={
            "chat_template_sha256": made_by.get("chat_template_sha256") or ref.manifest.get("chat_template_sha256"),
            "source": {"ref": ref.ref, "name": ref.name, "version": ref.version, "kind": ref.kind},
            "export": {"format": spec.format, "weights": spec.weights, **params,
                       "libraries": library_versions(_LIBRARIES[spec.format])},
            "calibration": {"sha256": calibration_sha, "origin": data.origin},
        },
    )
    write_manifest(out_dir, manifest)
    return manifest


def _write_report(result: ExportResult, manifest: dict[str, Any]) -> None:
    from cvml.manifest import write_manifest

    out = Path(result.output_dir)
    result.files = {"report_json": str(out / REPORT_JSON), "manifest": str(out / "manifest.json")}
    if result.format == "gguf":
        result.files["gguf"] = str(out / GGUF_FILE)
    (out / REPORT_JSON).write_text(json.dumps(result.as_dict(), indent=2, default=str) + "\n", encoding="utf-8")
    manifest["metrics"] = {
        "ppl_source": result.perplexity["source"]["ppl"],
        "ppl_exported": result.perplexity["exported"]["ppl"],
        "ppl_increase": result.perplexity["increase"],
        "top1_agreement": result.logits["top1_agreement"],
        "passed": result.passed,
    }
    manifest["report"] = REPORT_JSON
    manifest["registered"] = result.registered
    write_manifest(out, manifest)
