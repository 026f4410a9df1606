#!/usr/bin/env bash
# One check of cvml on a machine with one GPU, in under 8 minutes, written to one JSON file:
#   1. a random-weight model of Qwen2.5-0.5B's shape (no download),
#   2. the GPU tests (pytest -m gpu),
#   3. a short bf16 LoRA fine-tune on the synthetic CV data,
#   4. `cvml serve --engine vllm` and one rewrite through it, if vLLM installs there,
#   5. cvml's own engine on CUDA: benchmarks/serve_throughput.py at 1, 16 and 32 clients.
# A step that fails is recorded with its exit code and the next one runs.
#
#   scripts/gpu_check.sh [--out DIR]       # on the GPU machine, from the repository root
#   scripts/gpu_check.sh --dry-run         # the same steps on the CPU with a tiny model: the plumbing only
#
# Output: DIR/gpu_check.json — {"created", "python", "torch", "cuda", "gpu", "steps": {"model",
# "tests", "finetune", "vllm", "serve"}}, each step {"exit_code": N} plus the JSON its command
# printed (finetune: its result; serve: the benchmark's summary); logs as DIR/<step>.log.
set -uo pipefail

DRY=0
OUT=artifacts/gpu_check
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --out) OUT="$2"; shift ;;
    *) echo "usage: scripts/gpu_check.sh [--dry-run] [--out DIR]" >&2; exit 2 ;;
  esac
  shift
done
PY=${PYTHON:-.venv/bin/python}
CVML=${CVML:-.venv/bin/cvml}
WORK="$OUT/work"
mkdir -p "$WORK"
rm -f "$WORK"/*.out "$WORK"/*.code

if [ "$DRY" = 1 ]; then
  SHAPE=tiny DTYPE=float32 DEVICE=cpu STEPS=2 LEVELS=1 TOKENS=8 TESTS="--collect-only"
  SKIP=transformers_serve,generate_batch,sequential_generate,cvml_http
else
  SHAPE=qwen2.5-0.5b DTYPE=bfloat16 DEVICE=cuda STEPS=30 LEVELS=1,16,32 TOKENS=64 TESTS=""
  SKIP=transformers_serve,generate_batch
fi

# run STEP CMD...: stdout to $WORK/STEP.out, stderr to $OUT/STEP.log, the exit code to $WORK/STEP.code.
run() {
  local step="$1"; shift
  echo "== $step: $*" >&2
  "$@" > "$WORK/$step.out" 2> "$OUT/$step.log"
  local code=$?
  echo "$code" > "$WORK/$step.code"
  [ $code = 0 ] || echo "   $step exited $code (see $OUT/$step.log)" >&2
}

MODEL="$WORK/model"
run model "$PY" scripts/gpu_check.py model --shape "$SHAPE" --out "$MODEL" --dtype "$DTYPE"
# The synthetic CV pairs the fine-tune reads, generated and curated under $WORK with the model's tokenizer.
run data sh -c "$CVML tiny data --out $WORK/raw > /dev/null && $CVML curate recipes/tiny-cv-lora.yaml \
  --set 'curate.inputs=[$WORK/raw/cv-raw.jsonl]' --set curate.output=$WORK/data --set model.base=$MODEL --json"
run tests "$PY" -m pytest -q -m gpu $TESTS tests/
run finetune "$CVML" finetune recipes/tiny-cv-lora.yaml --max-steps "$STEPS" --output-dir "$WORK/run" --overwrite \
  --set "model.base=$MODEL" --set "model.device=$DEVICE" --set "model.dtype=$DTYPE" --set train.eval_every=1000 \
  --set "data.train=$WORK/data" --set "data.validation=$WORK/data" \
  --set train.register_model=false --set train.merge=false \
  --json
if "$PY" -c "import vllm" 2>/dev/null; then
  run vllm "$PY" scripts/serve_demo.py "$MODEL" --engine vllm
else
  echo '{"skipped": "vllm is not installed here"}' > "$WORK/vllm.out"; echo 0 > "$WORK/vllm.code"
fi
run serve "$PY" benchmarks/serve_throughput.py --model "$MODEL" --levels "$LEVELS" --new-tokens "$TOKENS" \
  --skip "$SKIP" --out "$WORK/serve"
"$PY" scripts/gpu_check.py report --work "$WORK" --out "$OUT/gpu_check.json" > /dev/null
echo "wrote $OUT/gpu_check.json" >&2
