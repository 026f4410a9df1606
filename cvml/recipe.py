"""The recipe: one YAML file per experiment, validated by pydantic with `extra="forbid"`.

Precedence, stated once: defaults < YAML < `--set a.b=c` < explicit CLI flags.
All problems of a file are reported together, each with its dotted path, and unknown
keys get a "did you mean". Each subcommand reads its own section.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from cvml.errors import ConfigError, RecipeError


def _off_is_off(value: Any) -> Any:
    """YAML 1.1 reads a bare `off` as false: `grounding: off` means the mode "off"."""
    return "off" if value is False else value


Grounding = Annotated[Literal["off", "numbers", "strict"], BeforeValidator(_off_is_off)]


class Section(BaseModel):
    """Every recipe section refuses keys it does not know."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class ModelSpec(Section):
    base: str = Field(description="Hub id or local folder of the base model (loaded with from_pretrained).")
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit) of `base`.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Weight dtype; auto = bfloat16 on a GPU that supports it, else float32."
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Where to train; cuda fails clearly without a GPU.")
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] = Field(
        "sdpa", description="Attention kernel. sdpa and eager honour packed-sequence boundaries."
    )
    load_in_4bit: bool = Field(False, description="QLoRA: load the base in 4-bit NF4 (bitsandbytes, CUDA only).")
    trust_remote_code: bool = Field(False, description="Allow model code from the hub (off unless you trust it).")


class DataSpec(Section):
    train: str = Field(description="Training records: a .jsonl/.parquet file, or a curated folder ({name} = recipe name).")
    validation: str | None = Field(
        None, description="Validation records; when absent, a group-disjoint slice of `train` is held out."
    )
    validation_fraction: float = Field(
        0.1, gt=0, lt=0.5, description="Share of groups held out for validation when `validation` is absent."
    )
    max_seq_len: int = Field(512, ge=32, description="Longest tokenized example; longer ones are quarantined.")
    max_examples: int | None = Field(None, ge=1, description="Use only the first N valid training records.")


class LoraSpec(Section):
    r: int = Field(16, ge=1, description="LoRA rank.")
    alpha: int = Field(32, ge=1, description="LoRA scaling numerator (scale = alpha / r).")
    dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the LoRA input.")
    target_modules: list[str] | Literal["all-linear"] = Field(
        "all-linear", description="Module names to adapt, or all-linear."
    )


class EarlyStoppingSpec(Section):
    patience: int = Field(3, ge=1, description="Evaluations without improvement before stopping.")
    min_delta: float = Field(0.0, ge=0, description="Smallest eval-loss drop that counts as improvement.")


class TrainSpec(Section):
    method: Literal["lora", "full"] = Field("lora", description="LoRA adapters (PEFT) or full fine-tuning.")
    lora: LoraSpec = Field(default_factory=LoraSpec)
    epochs: float = Field(1.0, gt=0, description="Passes over the training set (ignored when max_steps is set).")
    max_steps: int | None = Field(None, ge=1, description="Optimizer steps; overrides epochs.")
    micro_batch_size: int = Field(4, ge=1, description="Rows per forward pass per process (a packed row holds many examples).")
    grad_accum: int = Field(1, ge=1, description="Micro-batches per optimizer step.")
    lr: float = Field(2e-4, gt=0, description="Peak learning rate.")
    weight_decay: float = Field(0.0, ge=0)
    warmup_ratio: float = Field(0.05, ge=0, lt=1, description="Share of steps with linear warm-up.")
    scheduler: Literal["cosine", "linear", "constant"] = Field("cosine", description="Schedule after warm-up.")
    max_grad_norm: float | None = Field(1.0, gt=0, description="Gradient clipping; null disables it.")
    packing: bool = Field(True, description="Pack examples into rows of max_seq_len with no cross-example attention.")
    eval_every: int = Field(50, ge=1, description="Evaluate on the validation split every N optimizer steps.")
    save_every: int = Field(50, ge=1, description="Write a resumable checkpoint every N optimizer steps.")
    keep_checkpoints: int = Field(2, ge=1, description="How many recent checkpoints to keep.")
    log_every: int = Field(5, ge=1, description="Log loss and lr every N optimizer steps.")
    early_stopping: EarlyStoppingSpec | None = Field(None, description="Stop when eval loss stops improving.")
    output_dir: str = Field("runs/{name}", description="Run folder; {name} is the recipe name.")
    mixed_precision: Literal["no", "bf16", "fp16"] = Field("no", description="Accelerate mixed precision (GPU).")
    gradient_checkpointing: bool = Field(False, description="Trade compute for activation memory.")
    accelerate_config: str | None = Field(
        None, description="accelerate config YAML for multi-GPU runs (DDP/FSDP/DeepSpeed), used by --num-processes."
    )
    merge: bool = Field(False, description="After LoRA training, also write the adapter merged into the base.")
    register_model: bool = Field(True, description="Register the trained model in the registry under the recipe name.")


class NormalizeSpec(Section):
    fix_mojibake: bool = Field(True, description="Repair mojibake and HTML entities with ftfy.")
    max_source_tokens: int = Field(384, ge=1, description="Longer sources are quarantined (tokens of curate.tokenizer).")
    max_target_tokens: int = Field(256, ge=1, description="Longer targets are quarantined.")


class PiiSpec(Section):
    enabled: bool = Field(True, description="Redact PII with typed placeholders (<EMAIL_1>, <NAME_1>, ...).")
    types: list[str] = Field(
        default_factory=lambda: ["EMAIL", "PHONE", "URL", "ADDRESS", "DOB", "NATIONAL_ID", "NAME"],
        description="PII types to redact.",
    )
    names_file: str | None = Field(None, description="Text file of person names to redact, one per line.")


class DedupSpec(Section):
    enabled: bool = Field(True, description="Drop exact duplicates (after normalization), and near ones if `near`.")
    near: bool = Field(True, description="Also drop near duplicates (MinHash-LSH, verified by Jaccard).")
    threshold: float = Field(0.85, gt=0, le=1, description="Word Jaccard at which two rows are near duplicates.")
    num_perm: int = Field(128, ge=16, description="MinHash permutations (accuracy vs speed).")


class FilterSpec(Section):
    enabled: bool = Field(True, description="Apply the CV-text quality filters.")
    min_target_words: int = Field(3, ge=1, description="Targets with fewer words are trivial.")
    languages: list[str] = Field(default_factory=lambda: ["en"], description="Accepted languages (ISO 639-1).")
    grounded: bool = Field(
        True, description="Remove pairs whose target states facts (numbers, employers, degrees) the inputs lack."
    )
    harmful: bool = Field(
        True,
        description="Remove pairs whose target states a protected attribute the source lacks or abusive language, "
        "and pairs whose inputs carry a prompt injection.",
    )


class DecontamSpec(Section):
    eval_sets: list[str] = Field(default_factory=list, description="Eval/test record files whose n-grams training rows may not share.")
    ngram: int = Field(8, ge=3, description="Word n-gram length that counts as overlap.")


class SplitSpec(Section):
    train: float = Field(0.8, gt=0, lt=1, description="Share of groups in train.")
    validation: float = Field(0.1, ge=0, lt=1, description="Share of groups in validation.")
    test: float = Field(0.1, ge=0, lt=1, description="Share of groups in test.")
    seed: int = Field(0, description="Seed of the group hash; fixed so appended rows never move old ones.")

    @model_validator(mode="after")
    def _sums_to_one(self) -> "SplitSpec":
        total = self.train + self.validation + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"train + validation + test must be 1.0, got {total:g}")
        return self


class CurateSpec(Section):
    inputs: list[str] = Field(description="Raw record files (.jsonl, .csv, .parquet) or saved `datasets` folders.")
    output: str = Field("data/{name}", description="Dataset folder to write; {name} is the recipe name.")
    columns: dict[str, str] = Field(
        default_factory=dict, description="Record field → input column, e.g. {source_text: bullet, target: improved}."
    )
    tokenizer: str | None = Field(None, description="Tokenizer for length limits; default model.base; none = words.")
    normalize: NormalizeSpec = Field(default_factory=NormalizeSpec)
    pii: PiiSpec = Field(default_factory=PiiSpec)
    dedup: DedupSpec = Field(default_factory=DedupSpec)
    filters: FilterSpec = Field(default_factory=FilterSpec)
    decontaminate: DecontamSpec = Field(default_factory=DecontamSpec)
    split: SplitSpec = Field(default_factory=SplitSpec)
    engine: Literal["local", "ray"] = Field(
        "local", description="Where the per-row stages run: local (this machine's cores) or ray (Ray Data: a local Ray "
        "or a cluster; pip install 'cvml[ray]'). The dataset is the same either way."
    )
    workers: int | None = Field(
        None, ge=1, description="Parallel workers: processes (local) or Ray actors (ray); default: this machine's cores "
        "(local), the cluster's CPUs (ray)."
    )
    address: str | None = Field(
        None, description="engine ray: the cluster to join (auto, ray://head:10001); default: the Ray this process "
        "started, else a local one for the run."
    )
    shard_rows: int = Field(
        2048, ge=1, description="Input lines or rows per unit of parallel work; the dataset does not depend on it."
    )

    @model_validator(mode="after")
    def _known_columns(self) -> "CurateSpec":
        from cvml.data.records import Record

        unknown = sorted(set(self.columns) - set(Record.model_fields))
        if unknown:
            raise ValueError(f"columns maps unknown record fields {unknown}; fields are {sorted(Record.model_fields)}")
        return self

    @model_validator(mode="after")
    def _address_needs_ray(self) -> "CurateSpec":
        if self.address is not None and self.engine != "ray":
            raise ValueError("address is for engine ray: set engine: ray (--engine ray) or drop the address")
        return self


class QuantizeSpec(Section):
    method: str = Field(
        "gptq",
        description="gptq (optimum + GPT-QModel, calibrated), rtn (round-to-nearest: GPTQ's baseline), int8 (CPU serving).",
    )
    bits: int | None = Field(None, description="Weight bits (gptq/rtn: 2, 3, 4, 8; int8: 8); default 4 for gptq/rtn, 8 for int8.")
    group_size: int = Field(
        128, ge=-1, description="gptq/rtn: columns sharing one scale; -1 = one per output channel. Must divide every layer's in_features."
    )
    sym: bool = Field(True, description="gptq/rtn: symmetric (zero point fixed mid-range); saved in the portable GPTQ v1 format.")
    desc_act: bool = Field(False, description="gptq: quantize columns in order of decreasing activation (act-order).")
    damp_percent: float = Field(0.1, gt=0, lt=1, description="gptq: dampening added to the Hessian diagonal, as a share of its mean.")
    calibration_samples: int = Field(128, ge=1, description="gptq: calibration texts drawn from the train split, rendered with the chat template.")
    eval_samples: int = Field(200, ge=1, description="Validation records for the perplexity comparison (per assistant token).")
    quality_samples: int = Field(
        16, ge=0, description="Validation records both models answer greedily: side-by-side samples and bench quality metrics (0 = skip)."
    )
    max_new_tokens: int = Field(64, ge=1, description="New tokens per greedy sample.")
    max_ppl_increase: float | None = Field(
        None, gt=0, description="Fail (exit 1, nothing registered) when perplexity rises by more than this fraction (0.05 = 5%)."
    )
    data: str | None = Field(
        None, description="Curated dataset folder or record file for calibration and evaluation; default: data.train, else the source run's data."
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Where to quantize and evaluate; int8 runs on CPU only.")
    register_model: bool = Field(True, description="Register the result as the next version of the source's name (kind quantized).")
    output: str = Field(
        "runs/{name}-{variant}", description="Quantized model folder; {name}, {method}, {bits}, {variant} (gptq4, rtn3, int8)."
    )

    @model_validator(mode="after")
    def _method_can_do_it(self) -> "QuantizeSpec":
        from cvml.quantization import METHODS
        from cvml.registry.refs import did_you_mean

        method = METHODS.get(self.method)
        if method is None:
            raise ValueError(f"unknown method {self.method!r}; {did_you_mean(self.method, list(METHODS), 'methods')}")
        if self.bits is None:
            self.bits = method.default_bits
        if self.bits not in method.bits:
            others = sorted(name for name, m in METHODS.items() if self.bits in m.bits)
            instead = f", or use method {' / '.join(others)} for {self.bits} bits" if others else ""
            raise ValueError(
                f"method {self.method} cannot store {self.bits}-bit weights; set bits to one of {list(method.bits)}{instead}"
            )
        if self.group_size == 0:
            raise ValueError("group_size 0 is not a group size; use -1 (one scale per output channel) or e.g. 32, 64, 128")
        if self.method != "gptq" and self.desc_act:
            raise ValueError(f"desc_act orders columns by calibration activations, which {self.method} does not use; remove desc_act")
        if self.method == "int8":
            if "group_size" in self.model_fields_set and self.group_size != -1:
                raise ValueError("int8 keeps one scale per output channel; remove group_size (or set -1)")
            if not self.sym:
                raise ValueError("int8 weights are symmetric per channel; remove sym: false")
        return self


class ExportSpec(Section):
    format: Literal["openvino", "gguf"] = Field("openvino", description="openvino (OpenVINO GenAI folder) or gguf (llama.cpp, Ollama).")
    weights: str | None = Field(
        None, description="openvino: int8 (per channel, data-free) or int4 (groups, data-aware); gguf: f16, q8_0 or q4_0. Default int8 / q8_0."
    )
    group_size: int | None = Field(None, ge=-1, description="openvino int4: columns per scale; default the largest of 128, 64, 32 that divides every layer.")
    calibration_samples: int = Field(64, ge=0, description="openvino int4: calibration texts (train split, chat template) for scale estimation; 0 = round to nearest.")
    eval_samples: int = Field(200, ge=1, description="Validation records for the perplexity comparison (per assistant token).")
    max_ppl_increase: float | None = Field(
        None, gt=0, description="Fail (exit 1, nothing registered) when the exported model's perplexity rises by more than this fraction."
    )
    data: str | None = Field(None, description="Curated dataset for calibration and evaluation; default: data.train, else the source run's data.")
    register_model: bool = Field(True, description="Register the export as a child of its source (kind exported).")
    output: str = Field("runs/{name}-{format}-{weights}", description="Export folder; {name}, {format}, {weights}.")

    @model_validator(mode="after")
    def _weights_fit_format(self) -> "ExportSpec":
        allowed = {"openvino": ("int8", "int4"), "gguf": ("f16", "q8_0", "q4_0")}[self.format]
        if self.weights is None:
            self.weights = allowed[0] if self.format == "openvino" else "q8_0"
        if self.weights not in allowed:
            raise ValueError(f"weights {self.weights!r} is not a {self.format} option; one of {', '.join(allowed)}")
        return self


class GateSpec(Section):
    metric: str = Field(description="Dotted report metric, e.g. perf.c16.e2e_p95_s or quality.fabrication_rate.")
    max: float | None = Field(None, description="Absolute upper bound.")
    min: float | None = Field(None, description="Absolute lower bound.")
    max_drop: float | None = Field(
        None, ge=0, description="Relative to the baseline: may fall by at most this fraction; fails only when the "
        "whole confidence interval of the change lies beyond it (noise-aware).",
    )
    max_rise: float | None = Field(
        None, ge=0, description="Relative to the baseline: may rise by at most this fraction; fails only when the "
        "whole confidence interval of the change lies beyond it (noise-aware).",
    )

    @model_validator(mode="after")
    def _has_bound(self) -> "GateSpec":
        if all(v is None for v in (self.max, self.min, self.max_drop, self.max_rise)):
            raise ValueError(f"gate on {self.metric!r} sets no bound; give max, min, max_drop or max_rise")
        return self


class BenchSpec(Section):
    concurrency: list[int] = Field(default_factory=lambda: [1, 4, 16], description="Closed-loop client counts to sweep.")
    requests_per_level: int = Field(32, ge=1, description="Requests measured at each concurrency level.")
    warmup_requests: int = Field(4, ge=0, description="Unmeasured requests before the sweep.")
    poisson_rate: float | None = Field(None, gt=0, description="Also run open-loop Poisson arrivals at this rate (req/s).")
    trials: int = Field(
        3, ge=1, description="Repeats of the sweep; relative speed gates resample them (5-10 make tight intervals)."
    )
    max_new_tokens: int = Field(64, ge=1, description="New tokens per request (greedy).")
    ignore_eos: bool = Field(
        True, description="Perf requests decode exactly max_new_tokens (EOS ignored), so throughput compares like with like."
    )
    request_timeout_s: float = Field(60.0, gt=0, description="A perf request unfinished after this counts as an error.")
    confidence: float = Field(
        0.95, gt=0.5, lt=1, description="Two-sided level of the bootstrap intervals that relative gates decide on."
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Where the in-process engine runs the model.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Weight dtype for the bench; auto = as `cvml serve` loads it (see serve.dtype)."
    )
    eval_data: str | None = Field(None, description="Eval records (.jsonl or curated folder); default: curate output's test split.")
    eval_samples: int = Field(64, ge=1, description="Eval records scored for quality.")
    grounding: Grounding = Field(
        "strict", description="Grounding quality is measured under (as `serve.grounding` serves it)."
    )
    grounding_compare: bool = Field(
        True,
        description="Also generate with grounding off, so `safety.*` reports the fabrication, PII-leak and harmful "
        "rates both ways (`safety.fabrication_rate_off`, ...).",
    )
    bias_probe: bool = Field(True, description="Run the counterfactual name-swap bias probe.")
    bias_names_dir: str | None = Field(None, description="Folder of the bias-names data (default: the data shipped with cvml).")
    bias_templates: int | None = Field(
        None, ge=1,
        description="Résumé templates in the bias probe; null (default) = all 32, 1,024 cases (about 15 s with the "
        "tiny model on 2 CPU cores); 4 still covers every occupation (128 cases).",
    )
    gates: list[GateSpec] = Field(default_factory=list, description="Pass/fail rules; any failure exits 1.")
    output: str = Field("bench/{name}", description="Report folder; {name} is the recipe name.")


class ServeSpec(Section):
    host: str = Field(
        "127.0.0.1",
        description="Interface to bind; 0.0.0.0 exposes the server to the network (refused without an API key).",
    )
    port: int = Field(8000, ge=0, le=65535, description="Port (0 = any free port).")
    max_batch_size: int = Field(16, ge=1, description="Sequences decoded together.")
    max_queue: int = Field(64, ge=0, description="Waiting requests beyond the batch; more get 429.")
    batch_wait_ms: float = Field(2.0, ge=0, description="How long a new batch waits for company before starting.")
    max_new_tokens: int = Field(128, ge=1, description="Default (and cap of) new tokens per request.")
    request_timeout_s: float = Field(30.0, gt=0, description="Per-request deadline (504 past it).")
    drain_timeout_s: float = Field(30.0, ge=0, description="On SIGTERM, how long in-flight requests may finish.")
    log_text: Literal["redacted", "none"] = Field("redacted", description="Request log text: PII-redacted, or not stored.")
    log_retention_days: int = Field(
        30, ge=1,
        description="Days a request stays in the request log: `cvml serve` purges older ones on start and daily "
        "(each purge is recorded; `cvml logs stats` shows the last).",
    )  # fmt: skip
    log_db: str | None = Field(None, description="Request log SQLite file; default $CVML_HOME/requests.db.")
    model: str | None = Field(None, description="What to serve (path, name or name@alias) when no variants are given.")
    variants: list[str] = Field(
        default_factory=list, description="A/B arms as NAME=REF, e.g. [a=cv@prod, b=cv@canary]; needs split."
    )
    split: str | None = Field(None, description="Traffic percentages per variant, in order, e.g. 90/10.")
    experiment: str = Field("default", description="A/B experiment name: salts the sticky user hash, tags the log.")
    engine: Literal["cvml", "openvino", "vllm"] = Field(
        "cvml",
        description="cvml's batching engine (CPU or GPU), OpenVINO GenAI on a `cvml export openvino` folder (CPU), "
        "or vLLM's OpenAI server behind cvml (GPU).",
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Where the cvml engine runs.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Weight dtype at load; auto = bf16 on a GPU that has it, and on a CPU with native bf16 (AVX512-BF16, AMX) for models of 100M weights or more; else fp32."
    )
    watch_registry_s: float | None = Field(
        None, gt=0, description="Poll the registry this often and swap in re-pointed aliases (no restart)."
    )
    docs: bool = Field(False, description="Serve /docs and /openapi.json (off by default: they map the whole API).")
    grounding: Grounding = Field(
        "strict",
        description="Default grounding of /v1/cv/rewrite: numbers = only numbers the text or job description holds "
        "can be generated; strict = numbers and names (capitalised words, degrees) too; off = free decoding.",
    )
    guard: Literal["flag", "retry", "block"] = Field(
        "retry",
        description="Default guard of /v1/cv/rewrite when a check fails: flag = return it flagged; retry = resample "
        "(up to guard_retries times, within the deadline), then block; block = return the text unchanged.",
    )
    guard_retries: int = Field(2, ge=0, le=8, description="Resamples the retry guard may take.")


class GuardrailSpec(Section):
    metric: str = Field(description="Metric that must not get worse, e.g. fabrication_rate (offline) or error_rate (online).")
    tolerance: float = Field(
        0.0, ge=0, description="Largest acceptable worsening in the metric's units; fails when B is worse by more (one-sided, level alpha)."
    )


class OnlineAbtestSpec(Section):
    primary: Literal["acceptance_rate", "rating"] = Field(
        "acceptance_rate", description="Online primary metric, from user feedback: acceptance_rate or rating."
    )
    mde: float = Field(0.02, gt=0, description="Minimum detectable effect on the online primary metric (0.02 = 2 points of acceptance).")
    guardrails: list[GuardrailSpec] = Field(
        default_factory=lambda: [GuardrailSpec(metric="error_rate", tolerance=0.01), GuardrailSpec(metric="e2e_s", tolerance=0.25)],
        description="Online metrics that must not get worse: error_rate, e2e_s, ttft_s, fabrication_rate, pii_leak_rate.",
    )
    sequential: Literal["msprt", "confidence_sequence"] = Field(
        "msprt", description="Always-valid test read at every analysis: mSPRT (prior scale = mde) or a confidence sequence."
    )
    horizon: int = Field(10000, ge=1, description="Planned primary-metric observations (both variants) where the confidence sequence is tightest.")
    min_samples: int = Field(100, ge=2, description="Observations per variant before the sequential test is read.")
    srm_threshold: float = Field(0.001, gt=0, lt=1, description="Sample-ratio-mismatch chi-square p-value below which results are not trusted.")


class AbtestSpec(Section):
    primary: str = Field("chrf", description="Offline primary metric: a bench quality metric (chrf 0-100, rouge_l, ...) or latency_s.")
    mde: float = Field(1.0, gt=0, description="Minimum detectable effect on the primary metric, in its units; smaller gains are not worth shipping.")
    guardrails: list[GuardrailSpec] = Field(
        default_factory=lambda: [GuardrailSpec(metric="fabrication_rate"), GuardrailSpec(metric="pii_leak_rate")],
        description="Offline metrics that must not get worse (default: fabrication and PII leaks must not rise).",
    )
    metrics: list[str] | None = Field(None, description="Offline metrics to compare; default every metric bench computes.")
    alpha: float = Field(0.05, gt=0, lt=0.5, description="Significance level of every test (two-sided; guardrails one-sided).")
    power: float = Field(0.8, gt=0, lt=1, description="Power the sample-size answer of an inconclusive result aims for.")
    min_samples: int = Field(20, ge=2, description="Paired examples below which the offline verdict is INCONCLUSIVE.")
    bootstrap_resamples: int = Field(9999, ge=99, description="Resamples of the paired bootstrap.")
    eval_data: str | None = Field(None, description="Eval records for offline A/B (.jsonl or curated folder); --data overrides.")
    eval_samples: int | None = Field(None, ge=1, description="Score only the first N eval records.")
    max_new_tokens: int = Field(64, ge=1, description="New tokens per answer (greedy, the same for both models).")
    output: str = Field("abtest/{name}", description="Report folder; {name} is the experiment (online) or offline-<a>-vs-<b>.")
    online: OnlineAbtestSpec = Field(default_factory=OnlineAbtestSpec, description="How `cvml abtest analyze` reads the request log.")


# What `cvml monitor` measures, by the names recipes use (cvml.monitor computes them).
MONITOR_INPUT_FEATURES = (
    "source_chars", "source_tokens", "job_description_chars", "job_description_tokens", "task", "language",
    "non_letter_share", "oov_rate", "input_text",
)  # fmt: skip
MONITOR_OUTPUT_FEATURES = ("output_chars", "output_input_ratio")
MONITOR_STATTESTS = ("ks", "wasserstein", "chisquare", "z", "jensenshannon", "psi")
MONITOR_RATES = (
    "fabrication_rate", "pii_leak_rate", "harmful_rate", "error_rate", "timeout_rate", "empty_refusal_rate",
    "format_invalid_rate", "blocked_rate",
)  # fmt: skip


def _default_rate_limits() -> dict[str, float]:
    return {"fabrication_rate": 0.05, "pii_leak_rate": 0.01, "harmful_rate": 0.01, "error_rate": 0.02,
            "timeout_rate": 0.01, "empty_refusal_rate": 0.05}  # fmt: skip


class MonitorSpec(Section):
    model: str | None = Field(
        None, description="The monitored model (NAME@ALIAS, NAME@N or a folder); default: the version that served "
        "most of the window. Its vocabulary and tokenizer measure the text; `reference: training` reads its data.",
    )
    reference: str = Field(
        "training",
        description="What the window is compared with: training (the model's curated train split, found through its "
        "manifest), previous (the log's window of the same length just before), or START..END of the log.",
    )
    window: str = Field("24h", description="The current window: a duration up to now (15m, 24h, 7d) or START..END (UTC).")
    endpoint: str = Field("/v1/cv/rewrite", description="The logged endpoint whose requests are monitored.")
    min_rows: int = Field(30, ge=2, description="Fewer requests in the window (or a log reference) is an error (exit 2).")
    min_values: int = Field(
        20, ge=2, description="A feature with fewer values on either side is not tested; the report says so."
    )
    drift_share: float = Field(
        0.5, gt=0, le=1, description="Input drift when at least this share of the tested input features drifted."
    )
    thresholds: Literal["auto", "calibrated", "fixed"] = Field(
        "auto",
        description="fixed: Evidently's defaults (KS/chi-square/z p < alpha up to 1,000 reference rows, else "
        "Wasserstein/Jensen-Shannon >= distance_threshold; AUC > classifier_auc); calibrated: each threshold is the "
        "1-alpha quantile of the statistic over chunks of the reference the window's size; auto: calibrated when "
        "the reference holds calibration_min_ratio windows, else fixed.",
    )
    calibration_resamples: int = Field(100, ge=10, description="Reference chunks per calibrated threshold.")
    calibration_min_ratio: float = Field(
        2.0, ge=1.5, description="auto calibrates when the reference is at least this many times the window."
    )
    alpha: float = Field(0.05, gt=0, lt=0.5, description="Drift tests' level: p-value bound, or the calibration quantile.")
    distance_threshold: float = Field(
        0.1, gt=0, description="Fixed bound of the distances: Wasserstein (in reference standard deviations), "
        "Jensen-Shannon, PSI.",
    )
    classifier_auc: float = Field(
        0.55, gt=0.5, lt=1, description="Fixed bound of the domain classifier's ROC AUC (reference vs current text)."
    )
    classifier_decides: bool = Field(
        True, description="The domain classifier alone makes the verdict drift when its AUC is above classifier_auc "
        "with p below classifier_alpha: a change of topic moves the words, not the lengths or shares.",
    )
    classifier_alpha: float = Field(
        0.001, gt=0, lt=0.5, description="Level at which the domain classifier decides alone (see classifier_decides).",
    )
    stattests: dict[str, str] = Field(
        default_factory=dict, description="Per feature, a test instead of the default, e.g. {source_chars: psi}; "
        f"tests: {', '.join(MONITOR_STATTESTS)}.",
    )
    max_text_rows: int = Field(
        5000, ge=100, description="Features read from the text use a seeded sample of at most this many rows per side."
    )
    quality_alpha: float = Field(
        0.05, gt=0, lt=0.5, description="Family-wise level of the quality alerts (Holm over every rate and variant)."
    )
    rate_limits: dict[str, float] = Field(
        default_factory=_default_rate_limits,
        description="Rates that alert when significantly above the bound (one-sided exact test); with a log "
        f"reference, a significant rise over it alerts too. Rates: {', '.join(MONITOR_RATES)}.",
    )
    time_buckets: int = Field(12, ge=2, le=200, description="Points of the rates-over-time plots.")
    top_words: int = Field(15, ge=1, le=100, description="Words shown per side of the domain classifier.")
    output: str = Field("monitor/{name}", description="Report folder; {name} is the model's name.")
    webhook: str | None = Field(None, description="`cvml monitor watch` posts alerts here (http or https URL).")
    interval: str = Field("15m", description="How often `cvml monitor watch` evaluates (a duration).")

    @field_validator("reference")
    @classmethod
    def _reference(cls, value: str) -> str:
        if value in ("training", "previous"):
            return value
        if ".." not in value:
            raise ValueError(f"{value!r}: use training, previous or START..END (dates or ISO times, UTC)")
        return _window_text(value)

    @field_validator("window")
    @classmethod
    def _window(cls, value: str) -> str:
        return _window_text(value)

    @field_validator("interval")
    @classmethod
    def _interval(cls, value: str) -> str:
        from cvml.windows import parse_duration

        try:
            parse_duration(value)
        except ConfigError as exc:
            raise ValueError(exc.message) from None
        return value

    @field_validator("stattests")
    @classmethod
    def _stattests(cls, value: dict[str, str]) -> dict[str, str]:
        from cvml.registry.refs import did_you_mean

        numeric = [f for f in MONITOR_INPUT_FEATURES + MONITOR_OUTPUT_FEATURES if f not in ("input_text", "task", "language")]
        categorical = ["task", "language"]
        for feature, test in value.items():
            if feature not in numeric + categorical:
                raise ValueError(f"{feature}: not a feature with a statistical test; {did_you_mean(feature, numeric + categorical, 'features')}")
            if test not in MONITOR_STATTESTS:
                raise ValueError(f"{feature}: unknown test {test!r}; {did_you_mean(test, list(MONITOR_STATTESTS), 'tests')}")
            if feature in categorical and test in ("ks", "wasserstein"):
                raise ValueError(f"{feature}: {test} compares numbers; {feature} is categorical (chisquare, z, jensenshannon, psi)")
        return value

    @field_validator("rate_limits")
    @classmethod
    def _rate_limits(cls, value: dict[str, float]) -> dict[str, float]:
        from cvml.registry.refs import did_you_mean

        for rate, bound in value.items():
            if rate not in MONITOR_RATES:
                raise ValueError(f"{rate}: unknown rate; {did_you_mean(rate, list(MONITOR_RATES), 'rates')}")
            if not 0 <= bound < 1:
                raise ValueError(f"{rate}: {bound} is not a rate in [0, 1)")
        return value

    @field_validator("webhook")
    @classmethod
    def _webhook(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"https?://[^\s/]+", value):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value


def _window_text(value: str) -> str:
    from cvml.windows import check_window

    try:
        return check_window(value)
    except ConfigError as exc:
        raise ValueError(exc.message + (f" ({exc.hint})" if exc.hint else "")) from None


class Recipe(Section):
    name: str = Field(description="Experiment name; also the model name in the registry.")
    description: str | None = None
    seed: int = Field(42, description="Seed for data order, initialisation and dropout.")
    model: ModelSpec | None = Field(None, description="The base model (finetune, and curate's tokenizer).")
    data: DataSpec | None = Field(None, description="The curated data finetune trains on.")
    curate: CurateSpec | None = Field(None, description="How `cvml curate` makes the dataset.")
    train: TrainSpec = Field(default_factory=TrainSpec)
    quantize: QuantizeSpec | None = Field(None, description="How `cvml quantize` quantizes the trained model.")
    export: ExportSpec | None = Field(None, description="How `cvml export` writes the model for another runtime (OpenVINO, llama.cpp).")
    bench: BenchSpec | None = Field(None, description="What `cvml bench` measures and gates.")
    serve: ServeSpec | None = Field(None, description="Defaults of `cvml serve`.")
    abtest: AbtestSpec | None = Field(None, description="How `cvml abtest` compares two model versions and decides.")
    monitor: MonitorSpec | None = Field(None, description="What `cvml monitor` compares, tests and alerts on.")

    @model_validator(mode="after")
    def _cross_field_rules(self) -> "Recipe":
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", self.name):
            raise ValueError(
                f"name {self.name!r} must be letters, digits, '.', '_' or '-' (it names a folder and a registry model)"
            )
        if self.model and self.model.load_in_4bit and self.train.method == "full":
            raise ValueError("model.load_in_4bit needs train.method: lora (4-bit weights cannot be trained directly)")
        if self.train.merge and self.train.method != "lora":
            raise ValueError("train.merge only applies to train.method: lora; remove train.merge")
        if self.train.mixed_precision != "no" and self.model and self.model.device == "cpu":
            raise ValueError("train.mixed_precision needs a GPU; set it to 'no' for model.device: cpu")
        return self

    @property
    def output_dir(self) -> Path:
        return Path(self.train.output_dir.format(name=self.name))

    @property
    def curate_output(self) -> Path:
        return Path(self.curate.output.format(name=self.name))


# --------------------------------------------------------------------------- loading


def resolve_recipe(
    path: str | Path | None,
    sets: list[str] | None = None,
    flags: dict[str, Any] | None = None,
    *,
    require: tuple[str, ...] = (),
    name: str = "cvml",
    unset: tuple[str, ...] = (),
) -> Recipe:
    """The recipe a command runs with: defaults < YAML < `--set a.b=c` < explicit flags,
    validated once, every problem reported together.

    Args:
        path: the YAML recipe, or None for the defaults (then `name` names the recipe).
        sets: `--set` overrides, parsed as YAML values (`1e-4`, `true`, `[q, v]`).
        flags: dotted path -> typed value of the command's own options; None means "not
            given" and leaves the field alone. Values are placed as they are, never
            re-parsed, so `--output-dir 2024` stays the string "2024".
        require: the sections the command reads; a missing one is reported with the rest.
        unset: dotted paths a given flag replaces as a group (e.g. `--model` drops the
            YAML's variants and split), removed before the flags are placed.

    Raises:
        RecipeError: missing file, bad YAML, bad override, or validation problems (all listed).
    """
    data = _read_yaml(Path(path)) if path is not None else {"name": name}
    data = apply_overrides(data, sets or [])
    for key in unset:
        *parents, leaf = key.split(".")
        node = data
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(leaf, None)
    for key, value in (flags or {}).items():
        if value is not None:
            _place(data, key.split("."), value, item=f"{key}={value}")
    source = str(path) if path is not None else "the command line"
    return validate_recipe(data, source=source, require=require)


def load_recipe(path: str | Path, overrides: list[str] | None = None, require: tuple[str, ...] = ()) -> Recipe:
    """A YAML recipe with `--set` overrides (`resolve_recipe` without flags)."""
    return resolve_recipe(path, overrides, require=require)


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise RecipeError(
            f"recipe file not found: {path}",
            hint="Pass the path of a YAML recipe, e.g. recipes/tiny-cv.yaml.",
        )
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(exc, "problem", None) or str(exc)
        raise RecipeError(f"{path} is not valid YAML{where}: {problem}", hint="Fix the YAML syntax.") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise RecipeError(f"{path} must hold a mapping of sections, not a {type(raw).__name__}")
    return raw


def validate_recipe(data: dict[str, Any], source: str = "<recipe>", require: tuple[str, ...] = ()) -> Recipe:
    """Validate a recipe dict; every problem is reported with a dotted path."""
    problems = [(section, "required by this command but missing") for section in require if data.get(section) is None]
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as exc:
        problems += [_describe(err) for err in exc.errors()]
    if problems:
        n = len(problems)
        raise RecipeError(
            f"{source}: {n} problem{'s' if n != 1 else ''} in the recipe",
            problems=problems,
            hint="`cvml validate --explain` lists every field with its description.",
        )
    return recipe


def require_sections(recipe: Recipe, *sections: str) -> None:
    """Library-side guard: the calling area needs these sections (the CLI checks at load time)."""
    missing = [name for name in sections if getattr(recipe, name) is None]
    if missing:
        raise RecipeError(
            f"recipe {recipe.name!r} lacks what this command reads",
            problems=[(name, "required by this command but missing") for name in missing],
        )


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `a.b=c` overrides; values are parsed as YAML so `1e-4`, `true`, `[q,v]` get their types."""
    import copy

    data = copy.deepcopy(data)
    for item in overrides:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise RecipeError(
                f"bad override {item!r}: expected dotted.key=value",
                hint="Example: --set train.lr=1e-4",
            )
        try:
            parsed = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError:
            parsed = value
        _place(data, key.split("."), parsed, item)
    return data


def _place(data: dict[str, Any], parts: list[str], value: Any, item: str) -> None:
    node = data
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            raise RecipeError(f"bad override {item!r}: {'.'.join(parts[: i + 1])} is not a section")
        node = child
    node[parts[-1]] = value


def _describe(err: dict[str, Any]) -> tuple[str, str]:
    """One pydantic error as (dotted path, message), with a did-you-mean for unknown keys."""
    loc = [str(p) for p in err["loc"]]
    path = ".".join(loc) or "(recipe)"
    if err["type"] == "extra_forbidden":
        known = _fields_at(loc[:-1])
        msg = "unknown key"
        close = difflib.get_close_matches(loc[-1], known, n=1, cutoff=0.6)
        if close:
            msg += f"; did you mean '{'.'.join(loc[:-1] + [close[0]])}'?"
        elif known:
            msg += f"; allowed here: {', '.join(sorted(known))}"
        return path, msg
    if err["type"] == "missing":
        return path, "required but missing"
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    return path, msg


def _fields_at(loc: list[str]) -> list[str]:
    """Field names of the section at a location path (for did-you-mean)."""
    model: type[BaseModel] | None = Recipe
    for part in loc:
        if model is None or part not in model.model_fields:
            return []
        model = _section_type(model.model_fields[part].annotation)
    return list(model.model_fields) if model is not None else []


def _section_type(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _section_type(arg)
        if found is not None:
            return found
    return None


def explain(model: type[BaseModel] = Recipe, prefix: str = "") -> list[tuple[str, str, str]]:
    """Every field as (dotted path, type/default, description), for `cvml validate --explain`."""
    rows: list[tuple[str, str, str]] = []
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        sub = _section_type(field.annotation)
        if sub is not None:
            rows.extend(explain(sub, prefix=f"{path}."))
            continue
        default = "required" if field.is_required() else f"default {field.get_default(call_default_factory=True)!r}"
        rows.append((path, default, field.description or ""))
    return rows


def recipe_to_dict(recipe: Recipe) -> dict[str, Any]:
    """The resolved recipe as plain data (what manifests record and --dry-run prints)."""
    return recipe.model_dump(mode="json")
