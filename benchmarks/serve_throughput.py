"""Serving throughput and latency: cvml's engine vs the ways transformers serves the same model.

One run, one model, the same prompts (synthetic CV records through `build_messages` and the
model's chat template), greedy decoding with no repetition penalty (transformers' continuous
batching cannot apply one) and EOS masked so every request makes exactly `--new-tokens`.
At each level of concurrent closed-loop clients (1, 4, 16: a client sends its next request
when the last one is answered) it measures output tokens/s, time to first token and
end-to-end latency (p50/p95) of:

- cvml_engine: `cvml.serve.engine.Engine` in this process, one thread per client;
- cvml_http: `cvml serve` in a subprocess, streaming /v1/completions over HTTP;
- sequential_generate: one `model.generate` at a time, clients queue (a naive server);
- generate_batch: transformers' continuous batching, `generate_batch` on waves of one
  request per client (its manager kept warm between waves);
- transformers_serve: `transformers serve --continuous-batching` in a subprocess, streaming.

A system that cannot run here is reported with the reason instead of numbers. The table
goes to stderr, JSON + a latency plot + manifest to --out, and the last stdout line is the
JSON summary.

    python benchmarks/serve_throughput.py [--model PATH] [--levels 1,4,16] [--threads N] [--quick]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

DEMO_MODEL = Path(tempfile.gettempdir()) / "serve-bench" / "base"
QUICK_MODEL = Path(tempfile.gettempdir()) / "serve-bench" / "quick-base"
SYSTEMS = ("cvml_engine", "cvml_http", "sequential_generate", "generate_batch", "transformers_serve")


@dataclass
class Sample:
    """One answered request."""

    ttft_s: float
    e2e_s: float
    tokens: int
    error: str | None = None


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help=f"Model folder (default: the demo tiny model, built at {DEMO_MODEL} if missing).")
    parser.add_argument("--levels", default="1,4,16", help="Concurrent clients per level.")
    parser.add_argument("--new-tokens", type=int, default=64, help="Tokens generated per request.")
    parser.add_argument("--rounds", type=int, default=3, help="Requests each client sends (at least).")
    parser.add_argument("--min-requests", type=int, default=16, help="Requests per level at least (for percentiles).")
    parser.add_argument("--threads", type=int, default=None, help="torch threads for every system (default: torch's).")
    parser.add_argument("--skip", default="", help=f"Comma-separated systems to leave out: {', '.join(SYSTEMS)}.")
    parser.add_argument("--out", default="artifacts/bench/serve_throughput", help="Folder for JSON, plot and manifest.")
    parser.add_argument("--quick", action="store_true", help="Smoke run: small model, 16 new tokens, 1 round.")
    args = parser.parse_args()
    if args.quick:
        args.new_tokens, args.rounds, args.min_requests = min(args.new_tokens, 16), 1, 4

    import torch

    from cvml._quiet import quiet_libraries
    from cvml.modelio import load_for_inference

    quiet_libraries()
    if args.threads:
        torch.set_num_threads(args.threads)
    model_path = Path(args.model) if args.model else _default_model(args.quick)
    loaded = load_for_inference(str(model_path), device="cpu")
    levels = [int(x) for x in args.levels.split(",")]
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    prompts = _prompts(loaded.tokenizer, max(_requests(c, args) for c in levels))
    log(f"model {model_path} ({sum(p.numel() for p in loaded.model.parameters()) / 1e6:.2f} M parameters), "
        f"{len(prompts)} prompts of {min(len(p[1]) for p in prompts)}-{max(len(p[1]) for p in prompts)} tokens, "
        f"{args.new_tokens} new tokens, torch threads {torch.get_num_threads()}")

    runners: dict[str, Callable[[], Callable[[int, list], dict]]] = {
        "cvml_engine": lambda: _engine_runner(loaded, args),
        "cvml_http": lambda: _http_runner("cvml", model_path, loaded, args),
        "sequential_generate": lambda: _sequential_runner(loaded, args),
        "generate_batch": lambda: _generate_batch_runner(loaded, args),
        "transformers_serve": lambda: _http_runner("transformers", model_path, loaded, args),
    }
    table: dict[str, dict[str, dict]] = {str(c): {} for c in levels}
    for name, make in runners.items():
        if name in skip:
            for c in levels:
                table[str(c)][name] = {"skipped": "left out with --skip"}
            continue
        try:
            runner = make()
        except Unavailable as exc:
            log(f"{name}: not measured: {exc}")
            for c in levels:
                table[str(c)][name] = {"skipped": str(exc)}
            continue
        try:
            for c in levels:
                log(f"{name}: {c} client(s) ...")
                table[str(c)][name] = runner(c, prompts[: _requests(c, args)])
                _log_row(name, c, table[str(c)][name])
        finally:
            close = getattr(runner, "close", None)
            if close is not None:
                close()

    summary = _summary(table, levels, args, model_path, loaded, torch.get_num_threads())
    _write(summary, Path(args.out), model_path)
    print(json.dumps(summary))


class Unavailable(Exception):
    """A system that cannot run here; the reason goes into the JSON."""


# ---------------------------------------------------------------------------- setup


def _default_model(quick: bool) -> Path:
    """The demo tiny model (or, for --quick, a much smaller one), built once and reused."""
    if quick:
        if not (QUICK_MODEL / "config.json").is_file():
            from cvml.tiny.model import TinySpec, build_base_model

            log(f"building a small model at {QUICK_MODEL} ...")
            spec = TinySpec(vocab_size=1024, hidden_size=64, intermediate_size=128, num_layers=2, num_heads=2,
                            num_kv_heads=1, pretrain_epochs=1.0, corpus_docs=300, pretrain_batch=8)
            build_base_model(QUICK_MODEL, seed=0, spec=spec)
        return QUICK_MODEL
    if not (DEMO_MODEL / "config.json").is_file():
        log(f"building the demo tiny model at {DEMO_MODEL} (minutes) ...")
        subprocess.run([sys.executable, "-m", "cvml", "tiny", "model", "--out", str(DEMO_MODEL), "--no-register"],
                       check=True, stdout=sys.stderr)
    return DEMO_MODEL


def _requests(clients: int, args) -> int:
    return clients * max(args.rounds, math.ceil(args.min_requests / clients))


def _prompts(tokenizer, n: int) -> list[tuple[str, list[int]]]:
    """(text, ids) of chat prompts built from valid synthetic records, as serve builds them."""
    from pydantic import ValidationError

    from cvml.data.records import Record
    from cvml.prompts import build_messages
    from cvml.tiny.synth import generate_records

    out = []
    for row in generate_records(max(8, n // 3 + 8), seed=1):
        try:
            record = Record.model_validate(row)
        except ValidationError:
            continue  # the generator plants malformed rows for curation to catch
        messages = build_messages(record.task, record.source_text, record.job_description)
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        out.append((text, tokenizer(text, add_special_tokens=False)["input_ids"]))
        if len(out) == n:
            return out
    raise RuntimeError(f"only {len(out)} valid synthetic records for {n} prompts")


def _generation_config(loaded, new_tokens: int):
    from transformers import GenerationConfig

    eos = loaded.tokenizer.eos_token_id
    return GenerationConfig(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                            repetition_penalty=1.0, eos_token_id=eos, pad_token_id=loaded.tokenizer.pad_token_id)


# ---------------------------------------------------------------------------- load


def _closed_loop(clients: int, prompts: list, ask: Callable[[tuple[str, list[int]]], Sample]) -> dict:
    """`clients` threads, each sending its share of `prompts` one after the other."""
    samples: list[Sample] = []
    lock = threading.Lock()
    share = len(prompts) // clients

    def client(k: int) -> None:
        for prompt in prompts[k * share : (k + 1) * share]:
            try:
                sample = ask(prompt)
            except Exception as exc:  # recorded, so a failing system shows as failing
                sample = Sample(0.0, 0.0, 0, f"{type(exc).__name__}: {exc}")
            with lock:
                samples.append(sample)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return _stats(clients, samples, time.perf_counter() - started)


def _stats(clients: int, samples: list[Sample], wall: float) -> dict:
    import numpy as np

    ok = [s for s in samples if s.error is None]
    errors = [s.error for s in samples if s.error is not None]
    tokens = sum(s.tokens for s in ok)

    def pct(values, q):
        return round(float(np.percentile(values, q)), 4) if values else None

    return {
        "clients": clients,
        "requests": len(samples),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "output_tokens": tokens,
        "wall_s": round(wall, 3),
        "tokens_per_s": round(tokens / wall, 1) if wall > 0 else None,
        "ttft_p50_s": pct([s.ttft_s for s in ok], 50),
        "ttft_p95_s": pct([s.ttft_s for s in ok], 95),
        "e2e_p50_s": pct([s.e2e_s for s in ok], 50),
        "e2e_p95_s": pct([s.e2e_s for s in ok], 95),
        "e2e_all_s": [round(s.e2e_s, 4) for s in ok],
    }


# ---------------------------------------------------------------------------- systems


def _engine_runner(loaded, args):
    from cvml.serve.engine import Engine
    from cvml.serve.types import GenerationRequest, SamplingParams

    engine = Engine(loaded, max_batch_size=16, max_queue=256, num_threads=args.threads)
    engine.start()
    params = SamplingParams(max_new_tokens=args.new_tokens, ignore_eos=True, repetition_penalty=1.0)

    def ask(prompt) -> Sample:
        result = engine.submit(GenerationRequest(prompt_ids=prompt[1], params=params)).result()
        s = result.stats
        return Sample(s.ttft_s, s.e2e_s, s.completion_tokens, result.error)

    ask(_warm_prompt(loaded))

    def run(clients, prompts):
        return _closed_loop(clients, prompts, ask)

    run.close = engine.stop
    return run


def _sequential_runner(loaded, args):
    import torch
    from transformers.generation.streamers import BaseStreamer

    config = _generation_config(loaded, args.new_tokens)
    turn = threading.Lock()  # one generate at a time: later clients wait their turn

    class FirstToken(BaseStreamer):
        def __init__(self):
            self.calls, self.at = 0, None

        def put(self, value):
            self.calls += 1
            if self.calls == 2 and self.at is None:  # the first call carries the prompt
                self.at = time.perf_counter()

        def end(self):
            pass

    def ask(prompt) -> Sample:
        started = time.perf_counter()
        streamer = FirstToken()
        with turn, torch.inference_mode():
            out = loaded.model.generate(torch.tensor([prompt[1]]), generation_config=config, streamer=streamer)
        done = time.perf_counter()
        return Sample(streamer.at - started, done - started, out.shape[1] - len(prompt[1]))

    ask(_warm_prompt(loaded))
    return lambda clients, prompts: _closed_loop(clients, prompts, ask)


def _generate_batch_runner(loaded, args):
    config = _generation_config(loaded, args.new_tokens)
    model = loaded.model
    if not hasattr(model, "generate_batch"):
        raise Unavailable("this transformers has no generate_batch")

    def batch(inputs: list[list[int]]) -> tuple[float, dict]:
        started = time.perf_counter()
        out = model.generate_batch(inputs=inputs, generation_config=config, record_timestamps=True,
                                   progress_bar=False, persistent_manager=True)
        return started, out

    log("generate_batch: warming its manager up (untimed) ...")
    batch([_warm_prompt(loaded)[1]] * 2)

    def run(clients, prompts):
        samples, started = [], time.perf_counter()
        for wave in range(0, len(prompts), clients):  # each client has one request in every wave
            t0, out = batch([p[1] for p in prompts[wave : wave + clients]])
            for o in out.values():
                if o.error is not None or not o.timestamps:
                    samples.append(Sample(0.0, 0.0, 0, o.error or "no tokens"))
                else:
                    samples.append(Sample(o.timestamps[0] - t0, o.timestamps[-1] - t0, len(o.generated_tokens)))
        return _stats(clients, samples, time.perf_counter() - started)

    def close():
        destroy = getattr(model, "destroy_cached_continuous_batching_manager", None)
        if destroy is not None:
            destroy()

    run.close = close
    return run


def _http_runner(kind: str, model_path: Path, loaded, args):
    """A server in a subprocess, streamed to over HTTP by the client threads."""
    import httpx

    server = _Server(kind, model_path, args)
    try:
        url = server.start()
    except BaseException:
        server.stop()
        raise
    client = httpx.Client(timeout=120, limits=httpx.Limits(max_connections=64))
    gen_config = _generation_config(loaded, args.new_tokens).to_json_string(use_diff=True)

    def body(prompt) -> dict:
        common = {"max_tokens": args.new_tokens, "temperature": 0, "stream": True,
                  "stream_options": {"include_usage": True}}
        if kind == "cvml":  # the exact token ids; vLLM's ignore_eos extension where the server takes it
            return {**common, "prompt": prompt[1], "ignore_eos": True}
        return {**common, "model": str(model_path), "prompt": prompt[0], "generation_config": gen_config}

    def ask(prompt) -> Sample:
        started = time.perf_counter()
        first, tokens = None, 0
        with client.stream("POST", f"{url}/v1/completions", json=body(prompt)) as response:
            if response.status_code != 200:
                return Sample(0.0, 0.0, 0, f"HTTP {response.status_code}: {response.read()[:200]!r}")
            for line in response.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if first is None and any(c.get("text") for c in chunk.get("choices") or []):
                    first = time.perf_counter()
                if chunk.get("usage"):
                    tokens = chunk["usage"]["completion_tokens"]
        done = time.perf_counter()
        return Sample((first or done) - started, done - started, tokens)

    def close():
        client.close()
        server.stop()

    try:
        warm = ask(_warm_prompt(loaded))
    except BaseException:
        close()
        raise
    if warm.error:
        close()
        raise Unavailable(f"{kind} server answered {warm.error}")

    def run(clients, prompts):
        result = _closed_loop(clients, prompts, ask)
        result["server"] = server.description
        return result

    run.close = close
    return run


class _Server:
    """`cvml serve` or `transformers serve` on a free port, in its own process."""

    def __init__(self, kind: str, model_path: Path, args):
        self.kind = kind
        self.home = tempfile.mkdtemp(prefix="serve-bench-")
        env = {**os.environ, "CVML_HOME": self.home}
        if args.threads:
            env["OMP_NUM_THREADS"] = str(args.threads)
        self.env = env
        port = _free_port()
        if kind == "cvml":
            self.cmd = [sys.executable, "-m", "cvml", "serve", str(model_path), "--port", str(port), "--device", "cpu",
                        "--max-batch-size", "16", "--max-queue", "256", "--log-text", "none"]
        else:
            exe = Path(sys.executable).with_name("transformers")
            self.cmd = [str(exe), "serve", str(model_path), "--port", str(port), "--host", "127.0.0.1",
                        "--device", "cpu", "--continuous-batching"]
        self.url = f"http://127.0.0.1:{port}"
        self.description = " ".join(self.cmd[self.cmd.index("serve") :])
        self.process: subprocess.Popen | None = None
        self.log_path = Path(self.home) / "server.log"

    def start(self, timeout_s: float = 300.0) -> str:
        import httpx

        if self.kind == "transformers" and not Path(self.cmd[0]).is_file():
            raise Unavailable("the `transformers` CLI is not installed next to this Python")
        log_file = self.log_path.open("w")
        self.process = subprocess.Popen(self.cmd, env=self.env, stdout=log_file, stderr=subprocess.STDOUT)
        until = time.monotonic() + timeout_s
        health = "/ready" if self.kind == "cvml" else "/health"
        while time.monotonic() < until:
            if self.process.poll() is not None:
                raise Unavailable(f"`{self.description}` exited with {self.process.returncode}: {self._tail()}")
            try:
                if httpx.get(self.url + health, timeout=2).status_code == 200:
                    return self.url
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise Unavailable(f"`{self.description}` was not ready within {timeout_s:g} s: {self._tail()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.home, ignore_errors=True)

    def _tail(self) -> str:
        lines = self.log_path.read_text(errors="replace").strip().splitlines()
        return " | ".join(lines[-3:])


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _warm_prompt(loaded) -> tuple[str, list[int]]:
    return _prompts(loaded.tokenizer, 1)[0]


# ---------------------------------------------------------------------------- report


def _log_row(name: str, clients: int, row: dict) -> None:
    log(f"  {name:20s} c={clients:<3d} {row['tokens_per_s'] or 0:9.1f} tok/s  ttft p50 {row['ttft_p50_s']} "
        f"p95 {row['ttft_p95_s']}  e2e p50 {row['e2e_p50_s']} p95 {row['e2e_p95_s']}  errors {row['errors']}")


def _summary(table: dict, levels: list[int], args, model_path: Path, loaded, threads: int) -> dict:
    def value(system: str, clients: int, key: str):
        row = table.get(str(clients), {}).get(system, {})
        return row.get(key)

    def ratio(system: str, baseline: str, clients: int):
        ours, theirs = value(system, clients, "tokens_per_s"), value(baseline, clients, "tokens_per_s")
        return round(ours / theirs, 2) if ours and theirs else None

    top, one = max(levels), min(levels)
    summary = {
        "benchmark": "serve_throughput",
        "model": str(model_path),
        "model_parameters": sum(p.numel() for p in loaded.model.parameters()),
        "device": "cpu",
        "torch_threads": threads,
        "new_tokens": args.new_tokens,
        "decoding": "greedy, repetition_penalty 1.0, EOS masked (exactly new_tokens per request)",
        "quick": args.quick,
        f"ratio_vs_sequential_{top}": ratio("cvml_engine", "sequential_generate", top),
        f"ratio_vs_generate_batch_{top}": ratio("cvml_engine", "generate_batch", top),
        f"ratio_vs_transformers_serve_{top}": ratio("cvml_engine", "transformers_serve", top),
        f"p95_e2e_s_{top}": value("cvml_engine", top, "e2e_p95_s"),
        f"ttft_p95_s_{one}": value("cvml_engine", one, "ttft_p95_s"),
        f"http_ratio_vs_sequential_{top}": ratio("cvml_http", "sequential_generate", top),
        f"http_ratio_vs_generate_batch_{top}": ratio("cvml_http", "generate_batch", top),
        f"http_ratio_vs_transformers_serve_{top}": ratio("cvml_http", "transformers_serve", top),
        f"http_p95_e2e_s_{top}": value("cvml_http", top, "e2e_p95_s"),
        f"http_ttft_p95_s_{one}": value("cvml_http", one, "ttft_p95_s"),
        "levels": {c: {name: {k: v for k, v in row.items() if k != "e2e_all_s"} for name, row in rows.items()}
                   for c, rows in table.items()},
    }
    summary["targets"] = {
        "ratio_vs_sequential_ge_8": _at_least(summary[f"ratio_vs_sequential_{top}"], 8),
        "ratio_vs_generate_batch_ge_3": _at_least(summary[f"ratio_vs_generate_batch_{top}"], 3),
        "p95_e2e_le_2s": None if summary[f"p95_e2e_s_{top}"] is None else summary[f"p95_e2e_s_{top}"] <= 2.0,
        "ttft_p95_le_200ms": None if summary[f"ttft_p95_s_{one}"] is None else summary[f"ttft_p95_s_{one}"] <= 0.2,
    }
    summary["_e2e_all_s"] = {c: {n: r.get("e2e_all_s", []) for n, r in rows.items()} for c, rows in table.items()}
    return summary


def _at_least(value, bound):
    return None if value is None else value >= bound


def _write(summary: dict, out: Path, model_path: Path) -> None:
    """serve_throughput.json, a latency plot and the manifest in `out`."""
    from cvml.manifest import build_manifest, write_manifest

    distributions = summary.pop("_e2e_all_s")
    out.mkdir(parents=True, exist_ok=True)
    (out / "serve_throughput.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    _plot(summary, distributions, out / "serve_throughput.png")
    write_manifest(out, build_manifest("bench-serve-throughput", inputs={"model": model_path},
                                       extra={"quick": summary["quick"], "new_tokens": summary["new_tokens"]}))
    log(f"wrote {out / 'serve_throughput.json'} and {out / 'serve_throughput.png'}")


def _plot(summary: dict, distributions: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = list(summary["levels"])
    systems = [s for s in SYSTEMS if any(summary["levels"][c].get(s, {}).get("tokens_per_s") for c in levels)]
    fig, axes = plt.subplots(1, len(levels) + 1, figsize=(4.2 * (len(levels) + 1), 4.2))
    width = 0.8 / max(1, len(systems))
    for i, system in enumerate(systems):
        values = [summary["levels"][c].get(system, {}).get("tokens_per_s") or 0 for c in levels]
        axes[0].bar([x + i * width for x in range(len(levels))], values, width, label=system)
    axes[0].set_xticks([x + width * (len(systems) - 1) / 2 for x in range(len(levels))], [f"{c} clients" for c in levels])
    axes[0].set_ylabel("output tokens / s")
    axes[0].set_yscale("log")
    axes[0].legend(fontsize=7)
    for ax, c in zip(axes[1:], levels):
        data = [distributions[c].get(s) or [0.0] for s in systems]
        ax.boxplot(data, showfliers=True)
        ax.set_xticks(range(1, len(systems) + 1), [s.replace("_", "\n") for s in systems], fontsize=7)
        ax.set_yscale("log")
        ax.set_title(f"end-to-end latency (s), {c} client(s)")
    fig.suptitle(f"{Path(summary['model']).name}: {summary['new_tokens']} new tokens per request, "
                 f"{summary['torch_threads']} torch thread(s)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
