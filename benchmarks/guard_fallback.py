"""What serving on OpenVINO costs in safety: its guard retries against cvml's grounded decoding.

OpenVINO GenAI takes no per-token constraint, so `cvml serve --engine openvino` cannot ground
decoding; the guard checks each answer after the fact and resamples one that fails. This
measures, on the demo's fine-tuned model and its whole curated test split, both ways of
serving `/v1/cv/rewrite` through the real HTTP server (guard `retry`, `serve.guard_retries`):

- baseline: cvml's engine, grounding strict (the default);
- openvino: the same model exported int8 (`cvml export openvino`), grounding off (it must be).

Per arm: how often the answer passed at once, was retried into a pass, or was blocked; the
mean attempts; the fabrication rate of what clients received (a blocked answer counts as
no fabrication: it is withheld); and e2e p50/p95 with 4 concurrent clients. The inputs the
demo builds are built first when missing. The last line printed is one JSON object.

    python benchmarks/guard_fallback.py [--recipe recipes/tiny-cv.yaml] [--clients 4] [--limit N]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from grounding import log, prepare  # noqa: E402  (the demo's inputs, built as `make demo` builds them)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipe", default="recipes/tiny-cv.yaml")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--limit", type=int, default=None, help="First N test records (default: all).")
    args = parser.parse_args()
    try:
        with contextlib.redirect_stdout(sys.stderr):
            summary = run(args)
    except Exception as exc:  # a benchmark prints one line, not a traceback (CVML_DEBUG=1 shows it)
        if os.environ.get("CVML_DEBUG"):
            raise
        log(f"error: {type(exc).__name__}: {getattr(exc, 'message', exc)} (set CVML_DEBUG=1 for the traceback)")
        sys.exit(1)
    print(json.dumps(summary))


def run(args) -> dict:
    from cvml._quiet import quiet_libraries
    from cvml.evaluation import load_eval_records
    from cvml.modelio import load_for_inference
    from cvml.quantize.openvino_format import write_folder
    from cvml.recipe import load_recipe

    quiet_libraries()
    recipe = load_recipe(args.recipe)
    model_dir = Path(recipe.train.output_dir.format(name=recipe.name))
    prepare(recipe, model_dir)
    records = load_eval_records(recipe.curate_output, limit=args.limit)
    loaded = load_for_inference(str(model_dir), device="cpu", dtype="float32")
    with tempfile.TemporaryDirectory(prefix="cvml-guard-") as tmp:
        folder = Path(tmp) / "openvino-int8"
        folder.mkdir()
        write_folder(loaded.model, loaded.tokenizer, folder, "int8")
        arms = {
            "cvml_strict": _serve(_cvml_opener(loaded), model_dir, records, args.clients, recipe.bench.max_new_tokens),
            "openvino_off": _serve(_openvino_opener(folder, loaded), model_dir, records, args.clients,
                                   recipe.bench.max_new_tokens),
        }
    _print_table(arms)
    base, ov = arms["cvml_strict"], arms["openvino_off"]
    return {
        "model": str(model_dir), "n_records": len(records), "clients": args.clients, "arms": arms,
        "openvino_blocked_rate": ov["blocked_rate"], "openvino_mean_attempts": ov["mean_attempts"],
        "openvino_fabrication_rate_served": ov["fabrication_rate_served"],
        "cvml_fabrication_rate_served": base["fabrication_rate_served"],
        "p95_ratio_openvino_vs_cvml": round(ov["e2e_p95_s"] / base["e2e_p95_s"], 4),
    }


def _cvml_opener(loaded):
    from cvml.serve.engine import Engine
    from cvml.serve.pool import ServedModel

    def open_model(variant, ref):
        engine = Engine(loaded, max_batch_size=16)
        engine.start()
        return ServedModel(variant, ref, loaded.tokenizer, engine, loaded.context_length, release=engine.stop)

    return open_model


def _openvino_opener(folder: Path, loaded):
    from cvml.serve.openvino_engine import OpenVinoEngine
    from cvml.serve.pool import ServedModel

    def open_model(variant, ref):
        engine = OpenVinoEngine(folder, loaded.tokenizer, max_batch_size=16)
        engine.start()
        return ServedModel(variant, ref, loaded.tokenizer, engine, engine.context_length, release=engine.stop)

    return open_model


def _serve(opener, model_dir: Path, records, clients: int, max_new_tokens: int) -> dict:
    """Every record through `/v1/cv/rewrite` (guard retry) on a server with this engine."""
    import httpx

    from cvml.modelio import resolve_model
    from cvml.recipe import ServeSpec
    from cvml.safety.fabrication import check_fabrication
    from cvml.serve.server import BackgroundServer

    tmp = tempfile.mkdtemp(prefix="cvml-guard-log-")
    spec = ServeSpec(model=str(model_dir), port=0, guard="retry", log_db=f"{tmp}/requests.db", max_new_tokens=max_new_tokens)
    server = BackgroundServer(spec, opener=opener, resolver=lambda ref: resolve_model(model_dir))
    results: list[dict] = []
    lock, queue = threading.Lock(), list(records)

    def client() -> None:
        with httpx.Client(base_url=server.url, timeout=120) as http:
            while True:
                with lock:
                    if not queue:
                        return
                    record = queue.pop()
                started = time.perf_counter()
                body = http.post("/v1/cv/rewrite", json={
                    "text": record.source_text, "job_description": record.job_description, "task": record.task,
                    "max_tokens": max_new_tokens, "seed": 0}).json()
                elapsed = time.perf_counter() - started
                guard = body["guard"]
                served = "" if guard["action"] == "blocked" else body["output"]
                fabricated = bool(served) and check_fabrication(served, record.source_text, record.job_description).flagged
                with lock:
                    results.append({"action": guard["action"], "attempts": guard["attempts"], "e2e_s": elapsed,
                                    "reasons": guard["reasons"], "tokens": body["usage"]["completion_tokens"],
                                    "fabricated": fabricated, "grounding": guard["grounding"]})

    with server:
        threads = [threading.Thread(target=client) for _ in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    n = len(results)
    e2e = sorted(r["e2e_s"] for r in results)
    actions = {a: sum(r["action"] == a for r in results) / n for a in ("passed", "retried", "blocked")}
    reasons = sorted({reason for r in results for reason in r["reasons"]})
    return {
        "reasons": {reason: sum(reason in r["reasons"] for r in results) / n for reason in reasons},
        "mean_completion_tokens": statistics.fmean(r["tokens"] for r in results),
        "grounding": results[0]["grounding"], "passed_rate": actions["passed"], "retried_rate": actions["retried"],
        "blocked_rate": actions["blocked"], "mean_attempts": statistics.fmean(r["attempts"] for r in results),
        "fabrication_rate_served": sum(r["fabricated"] for r in results) / n,
        "e2e_p50_s": statistics.median(e2e), "e2e_p95_s": e2e[min(n - 1, int(0.95 * n))], "requests": n,
    }


def _print_table(arms: dict) -> None:
    print("| arm | grounding | passed | retried | blocked | mean attempts | fabricated (served) | e2e p50 | e2e p95 |",
          file=sys.stderr)
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|", file=sys.stderr)
    for name, a in arms.items():
        print(f"| {name} | {a['grounding']} | {a['passed_rate']:.1%} | {a['retried_rate']:.1%} | {a['blocked_rate']:.1%} | "
              f"{a['mean_attempts']:.2f} | {a['fabrication_rate_served']:.1%} | {a['e2e_p50_s']:.2f} s | {a['e2e_p95_s']:.2f} s |",
              file=sys.stderr)


if __name__ == "__main__":
    main()
