"""Structured output's cost: tokens/s at 16 clients with a JSON schema vs without.

cvml's engine serves the tiny base model (built first if missing, as `cvml tiny model`);
16 closed-loop clients send chat prompts, sampled (seeded) with max_tokens 96, in alternating
trials with `response_format` (a per-section CV schema enforced by xgrammar) and without.
Aggregate output tokens/s of each, their ratio (target >= 0.8), the share of schema outputs
that are valid JSON for the schema when they finish, and the schema's compile time. The
last line printed is one JSON object.

    python benchmarks/structured_output.py [--clients 16] [--requests 64] [--trials 3]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

SCHEMA = {
    "type": "object",
    "properties": {"bullets": {"type": "array", "items": {"type": "string"}},
                   "skills": {"type": "array", "items": {"type": "string"}}},
    "required": ["bullets", "skills"], "additionalProperties": False,
}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", default="artifacts/tiny/base")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--trials", type=int, default=3)
    args = parser.parse_args()
    try:
        with contextlib.redirect_stdout(sys.stderr):
            summary = run(args)
    except Exception as exc:  # a benchmark prints one line, not a traceback (CVML_DEBUG=1 shows it)
        if os.environ.get("CVML_DEBUG"):
            raise
        log(f"error: {type(exc).__name__}: {exc} (set CVML_DEBUG=1 for the traceback)")
        sys.exit(1)
    print(json.dumps(summary))


def run(args) -> dict:
    import jsonschema

    from cvml._quiet import quiet_libraries
    from cvml.modelio import load_for_inference
    from cvml.serve.completions import chat_prompt_ids
    from cvml.serve.engine import Engine
    from cvml.serve.structured import grammar_constraint
    from cvml.serve.types import GenerationRequest, SamplingParams
    from cvml.tiny.synth import generate_records

    quiet_libraries()
    if not (Path(args.base) / "config.json").exists():
        from cvml.tiny.model import build_base_model

        log(f"building the tiny base model at {args.base} (as `cvml tiny model --out {args.base}`) ...")
        build_base_model(args.base, seed=0)
    loaded = load_for_inference(args.base, device="cpu")
    rows = [r for r in generate_records(40, seed=7) if isinstance(r.get("source_text"), str)][: args.requests]
    prompts = [chat_prompt_ids(loaded.tokenizer, [{"role": "user", "content": "Split into bullets and skills as JSON:\n"
                                                   + r["source_text"]}]) for r in rows]
    engine = Engine(loaded, max_batch_size=args.clients, max_queue=4 * args.clients)
    engine.start()
    fmt = {"type": "json_schema", "json_schema": {"schema": SCHEMA}}
    start = time.perf_counter()
    grammar_constraint(loaded.tokenizer, engine.vocab_size, fmt, engine.eos_ids)
    compile_s = time.perf_counter() - start
    valid, finished = 0, 0

    def trial(schema: bool) -> float:
        nonlocal valid, finished
        queue, lock, tokens = list(range(len(prompts))), threading.Lock(), [0]

        def client() -> None:
            nonlocal valid, finished
            while True:
                with lock:
                    if not queue:
                        return
                    i = queue.pop()
                constraint = grammar_constraint(loaded.tokenizer, engine.vocab_size, fmt, engine.eos_ids) if schema else None
                params = SamplingParams(max_new_tokens=96, temperature=1.0, seed=i)
                result = engine.submit(GenerationRequest(prompts[i], params, constraint=constraint)).result(300)
                with lock:
                    tokens[0] += len(result.token_ids)
                    if schema and result.finish_reason == "stop":
                        finished += 1
                        with contextlib.suppress(ValueError, jsonschema.ValidationError):
                            jsonschema.validate(json.loads(result.text), SCHEMA)
                            valid += 1

        t0 = time.perf_counter()
        threads = [threading.Thread(target=client) for _ in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return tokens[0] / (time.perf_counter() - t0)

    try:
        trial(False)  # warm-up
        rates: dict[bool, list[float]] = {False: [], True: []}
        for k in range(args.trials):
            for schema in ((False, True) if k % 2 == 0 else (True, False)):
                rates[schema].append(trial(schema))
    finally:
        engine.stop()
    free, bound = statistics.median(rates[False]), statistics.median(rates[True])
    log(f"| response_format | output tok/s at {args.clients} clients |\n|---|---:|\n| none | {free:,.0f} |\n"
        f"| json_schema | {bound:,.0f} |\nschema compile {compile_s * 1000:.1f} ms; finished schema outputs valid "
        f"{valid}/{finished}")
    return {"clients": args.clients, "tokens_per_s_free": round(free, 1), "tokens_per_s_schema": round(bound, 1),
            "ratio_schema": round(bound / free, 4), "schema_outputs_finished": finished,
            "schema_outputs_valid": valid, "compile_ms": round(compile_s * 1000, 2)}


if __name__ == "__main__":
    main()
