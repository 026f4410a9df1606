"""How cvml runs a `cvml export openvino` folder on the CPU, for the export's read-back check
and for `cvml serve --engine openvino` alike, so the quantization cost an export reports is
the one its server has.

OpenVINO's CPU plugin quantizes activations to int8 on the fly before its int8/int4 weight
matmuls, one scale per group of input channels; its default group is 32. Groups of 128
served 8 clients 15–25% faster at Qwen2.5-0.5B's shape on this project's 2-core machine
(int8 weights 146 → 155–175 tok/s, int4 142 → 174–178; 64 and 256 were slower than 128,
per-token much slower) and moved the logits little next to the weight quantization itself
(int8 weights: relative logit error 0.061 → 0.066 against fp32, top-1 agreement 0.855 → 0.852).
`benchmarks/cpu_serving.py` shows the pipeline with and without it.
"""

from __future__ import annotations

MODEL_XML = "openvino_model.xml"
ACTIVATION_GROUP_SIZE = 128


def cpu_properties(num_threads: int | None = None) -> dict[str, int]:
    """Compile properties of cvml's OpenVINO models (threads: the runtime's default, all cores)."""
    properties = {"DYNAMIC_QUANTIZATION_GROUP_SIZE": ACTIVATION_GROUP_SIZE}
    if num_threads:
        properties["INFERENCE_NUM_THREADS"] = num_threads
    return properties
