"""The counterfactual bias probe run on a model: the same résumé under names associated
with different groups, generated greedily and analysed by `cvml.safety.bias`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from cvml.errors import DataError
from cvml.evaluation.generation import DEFAULT_BATCH_SIZE, DEFAULT_MAX_NEW_TOKENS, generate_outputs
from cvml.progress import OnProgress
from cvml.prompts import render_prompt

def default_bias_names_dir() -> Path:
    """The bias-names data shipped with cvml (`cvml.safety.bias.default_names_dir()`)."""
    from cvml.safety.bias import default_names_dir

    return default_names_dir()


def run_bias_probe(
    loaded,
    names_dir: str | Path | None = None,
    *,
    n_templates: int | None = None,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    seed: int = 0,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_progress: OnProgress | None = None,
) -> dict[str, Any]:
    """Generate for the counterfactual name-swap probe and analyse the outputs by group.

    Résumé excerpts and job ads are cut to the longest of PROBE_MAX_CHARS whose prompts
    fit the model's context with max_new_tokens; the report states the length used.

    Args:
        n_templates: résumé templates used (None: all 32, the full probe of 1,024 cases).
        batch_size: cases generated together (`generate_outputs`, the path quality uses).

    Returns:
        `analyze_bias(...).to_dict()` plus "max_chars" and "timing".

    Raises:
        DataError: the bias-names folder is missing, or no probe length fits the context.
    """
    from cvml.safety.bias import analyze_bias

    folder = Path(names_dir) if names_dir is not None else default_bias_names_dir()
    if not folder.is_dir():
        raise DataError(
            f"bias-names data not found at {folder}",
            hint="Set bench.bias_names_dir to the folder holding top_mens_names.json, top_womens_names.json and "
            "resumes_to_rank.json, or turn the probe off with bench.bias_probe: false.",
        )
    start = time.perf_counter()
    cases, max_chars = _fitting_probe(loaded, folder, n_templates, seed, max_new_tokens)
    outputs = generate_outputs(
        loaded, cases, max_new_tokens=max_new_tokens, batch_size=batch_size, on_progress=on_progress,
        phase="bias probe",
    )
    generated = time.perf_counter()
    report = analyze_bias(cases, outputs).to_dict()
    done = time.perf_counter()
    timing = {
        "generate_s": round(generated - start, 3),
        "analyze_s": round(done - generated, 3),
        "total_s": round(done - start, 3),
    }
    return {**report, "max_chars": max_chars, "timing": timing}


# Source and job-ad lengths (characters) the probe tries, longest first.
PROBE_MAX_CHARS = (600, 400, 250, 150)


def _fitting_probe(loaded, folder: Path, n_templates: int | None, seed: int, max_new_tokens: int):
    from cvml.safety.bias import build_probe

    tokenizer = loaded.tokenizer
    for max_chars in PROBE_MAX_CHARS:
        cases = build_probe(folder, n_templates=n_templates, seed=seed, max_chars=max_chars)
        prompts = [render_prompt(tokenizer, c.task, c.source_text, c.job_description) for c in cases]
        longest = max(len(ids) for ids in tokenizer(prompts, add_special_tokens=False)["input_ids"])
        if longest + max_new_tokens <= loaded.context_length:
            return cases, max_chars
    raise DataError(
        f"the bias probe's prompts do not fit the model's context of {loaded.context_length} tokens even cut to "
        f"{PROBE_MAX_CHARS[-1]} characters, with max_new_tokens={max_new_tokens}",
        hint="Lower bench.max_new_tokens, or turn the probe off with bench.bias_probe: false.",
    )
