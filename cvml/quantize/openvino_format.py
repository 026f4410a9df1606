"""A transformers model as an OpenVINO GenAI model folder, weights compressed by NNCF.

How the graph is made: the model is written as an f16 GGUF file (`gguf_format`) and
OpenVINO GenAI's own GGUF reader builds the stateful graph from it (the graph its
`LLMPipeline` and `ContinuousBatchingPipeline` expect: input_ids, attention_mask,
position_ids, beam_idx, KV cache as state), which it saves as IR. optimum-intel, the usual
route, cannot be used with this project's transformers (optimum-intel 2.2 needs
transformers < 5.6 and fails to import with 5.25). NNCF then compresses the weights: int8
per channel (data-free), or int4 in groups with scale estimation on calibration texts
(data-aware, as `cvml quantize` calibrates GPTQ). The tokenizer is converted by
openvino-tokenizers from the model's own tokenizer (the chat template goes with it).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Sequence

from cvml.openvino_runtime import MODEL_XML, cpu_properties

WEIGHTS = ("int8", "int4")
# int4 groups: the largest of these that divides every compressed layer's input size.
INT4_GROUP_SIZES = (128, 64, 32)


def graph_from_model(model, tokenizer, chat_template: str):
    """The stateful OpenVINO graph of `model` (f16 weights), built by GenAI's GGUF reader."""
    import openvino as ov
    import openvino_genai

    from cvml.quantize import gguf_format

    with tempfile.TemporaryDirectory(prefix="cvml-ov-") as tmp:
        gguf = Path(tmp) / "model.gguf"
        gguf_format.write(model, tokenizer, chat_template, gguf, outtype="f16", name="cvml-export")
        save_tokenizer(tokenizer, Path(tmp))
        # The reader saves the graph it builds next to the file.
        openvino_genai.LLMPipeline(str(gguf), openvino_genai.Tokenizer(tmp), "CPU", enable_save_ov_model=True)
        return ov.Core().read_model(str(Path(tmp) / MODEL_XML))


def save_tokenizer(tokenizer, folder: Path) -> None:
    import openvino as ov
    from openvino_tokenizers import convert_tokenizer

    encoder, decoder = convert_tokenizer(tokenizer, with_detokenizer=True)
    ov.save_model(encoder, str(folder / "openvino_tokenizer.xml"))
    ov.save_model(decoder, str(folder / "openvino_detokenizer.xml"))


def int4_group_size(model) -> int:
    sizes = {module.in_features for module in model.modules() if type(module).__name__ == "Linear"}
    for group in INT4_GROUP_SIZES:
        if all(size % group == 0 for size in sizes):
            return group
    return -1  # one scale per output channel


def compress(graph, weights: str, *, group_size: int, calibration: Sequence[list[int]] = ()) -> dict[str, Any]:
    """Compress `graph`'s weights in place; returns what was done, for the manifest.

    int4 with calibration rows is data-aware (NNCF's scale estimation on the activations
    those rows produce); without rows it rounds to nearest.
    """
    import nncf

    if weights == "int8":
        nncf.compress_weights(graph, mode=nncf.CompressWeightsMode.INT8_ASYM)
        return {"mode": "int8_asym", "group_size": -1, "data_aware": False}
    kwargs: dict[str, Any] = {}
    if calibration:
        kwargs = {"dataset": nncf.Dataset([model_inputs(ids) for ids in calibration]), "scale_estimation": True}
    nncf.compress_weights(graph, mode=nncf.CompressWeightsMode.INT4_ASYM, group_size=group_size, ratio=1.0, **kwargs)
    return {"mode": "int4_asym", "group_size": group_size, "data_aware": bool(calibration), "calibration_rows": len(calibration)}


def model_inputs(ids: Sequence[int]) -> dict[str, Any]:
    """One whole sequence as the stateful graph's inputs (an empty cache before it)."""
    import numpy as np

    row = np.asarray([list(ids)], dtype=np.int64)
    return {
        "input_ids": row,
        "attention_mask": np.ones_like(row),
        "position_ids": np.arange(row.shape[1], dtype=np.int64)[None],
        "beam_idx": np.zeros(1, dtype=np.int32),
    }


class CompiledLM:
    """An exported graph compiled on the CPU as cvml serves it, called like a transformers
    causal LM for perplexity and logits: `model(input_ids=tensor[1, n]).logits` (the state is
    reset per call)."""

    def __init__(self, folder: Path):
        import openvino as ov

        self.compiled = ov.Core().compile_model(str(Path(folder) / MODEL_XML), "CPU", cpu_properties())
        self.request = self.compiled.create_infer_request()

    def __call__(self, input_ids, logits_to_keep: int = 0, **_):
        import torch

        self.request.reset_state()
        out = self.request.infer(model_inputs(input_ids[0].tolist()))[self.compiled.outputs[0]]
        logits = torch.from_numpy(out.copy())
        if logits_to_keep:
            logits = logits[:, -logits_to_keep:]
        return _Output(logits)


class _Output:
    def __init__(self, logits):
        self.logits = logits


def write_folder(model, tokenizer, folder: Path, weights: str, *, group_size: int | None = None,
                 calibration: Sequence[list[int]] = ()) -> dict[str, Any]:
    """Everything an OpenVINO GenAI pipeline (and cvml's openvino engine) loads from `folder`:
    the compressed graph, the tokenizer graphs, and the model's own tokenizer, config and
    generation config. Returns what `compress` did."""
    import openvino as ov

    graph = graph_from_model(model, tokenizer, tokenizer.chat_template)
    group = group_size if group_size is not None else int4_group_size(model)
    done = compress(graph, weights, group_size=group, calibration=calibration)
    ov.save_model(graph, str(folder / MODEL_XML), compress_to_fp16=False)
    save_tokenizer(tokenizer, folder)
    tokenizer.save_pretrained(folder)
    model.config.save_pretrained(folder)
    model.generation_config.save_pretrained(folder)
    return done
