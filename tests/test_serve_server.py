"""The server's lifecycle in real processes: SIGTERM drains then exits 0; a promotion plus
POST /admin/reload swaps the model under load without a failed request. And the engine
cvml puts in front of vLLM, checked against an OpenAI-compatible server that is here."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

import httpx
from serve_process import ServeProcess

from cvml.modelio import load_inference_tokenizer
from cvml.recipe import ServeSpec
from cvml.registry import Registry
from cvml.serve.pool import ServedModel
from cvml.serve.requestlog import RequestLog
from cvml.serve.server import BackgroundServer
from cvml.serve.vllm_engine import UpstreamEngine

CHAT = [{"role": "user", "content": "Rewrite this CV bullet to be stronger:\nLed a team of five engineers"}]


def test_sigterm_turns_ready_503_lets_streams_finish_and_exits_0(tmp_path, tiny_base):
    log_db = tmp_path / "requests.db"
    server = ServeProcess(
        [str(tiny_base), "--max-batch-size", "1", "--max-new-tokens", "300", "--drain-timeout", "120",
         "--request-timeout", "300", "--log-db", str(log_db)],
        tmp_path / "home",
    )
    started = [threading.Event() for _ in range(3)]
    results: list[dict] = [{} for _ in range(3)]

    def stream(i: int) -> None:
        body = {"messages": CHAT, "max_tokens": 300, "temperature": 0, "stream": True,
                "stream_options": {"include_usage": True}}
        pieces, result = [], results[i]
        with httpx.stream("POST", f"{server.url}/v1/chat/completions", json=body, timeout=120) as response:
            result["status"] = response.status_code
            for line in response.iter_lines():
                started[i].set()
                if line == "data: [DONE]":
                    result["done"] = True
                elif line.startswith("data: "):
                    chunk = json.loads(line[6:])
                    pieces.append(chunk)
                    if "error" in chunk:
                        result["error"] = chunk["error"]
        choices = [c["choices"][0] for c in pieces if c.get("choices")]
        result["finish"] = [choice["finish_reason"] for choice in choices if choice["finish_reason"]]
        result["usage"] = pieces[-1].get("usage") if pieces else None

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for event in started:  # every request admitted (one decoding, two queued) before the signal
        assert event.wait(60)
    server.proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    ready = httpx.get(f"{server.url}/ready")
    refused = httpx.post(f"{server.url}/v1/chat/completions", json={"messages": CHAT, "max_tokens": 2})
    health = httpx.get(f"{server.url}/health")
    in_flight = [not r.get("done") for r in results]
    for thread in threads:
        thread.join(120)

    assert ready.status_code == 503 and ready.json()["error"]["code"] == "draining"
    assert refused.status_code == 503 and health.status_code == 200
    assert any(in_flight), "the streams had finished before the checks; they prove nothing"
    for result in results:
        assert result["status"] == 200 and result["done"] and "error" not in result, result
        assert result["finish"] == ["length"] and result["usage"]["completion_tokens"] == 300
    assert server.proc.wait(60) == 0, server.stderr_path.read_text()
    rows = RequestLog(log_db).query()
    assert sorted(row["status"] for row in rows) == [200, 200, 200]


def test_promotion_and_reload_under_load_fail_no_request(tmp_path, tiny_base):
    home = tmp_path / "home"
    home.mkdir()
    registry = Registry(home / "registry.db")
    registry.register(tiny_base, "tiny", "base")
    registry.register(tiny_base, "tiny", "base")
    registry.promote("tiny@1", "prod")
    key = "k-reload"
    server = ServeProcess(["tiny@prod", "--max-new-tokens", "8"], home, env={"CVML_API_KEY": key})
    auth = {"authorization": f"Bearer {key}"}
    assert server.info["variants"] == {"default": "tiny@1"}

    outcomes: list[tuple[float, float, int, int | None]] = []
    stop = threading.Event()

    def hammer(worker: int) -> None:
        with httpx.Client(base_url=server.url, headers=auth, timeout=60) as client:
            i = 0
            while not stop.is_set():
                began = time.monotonic()
                user = f"u{worker}-{i}"
                body = {"text": "Led a team of five", "task": "rewrite_bullet", "max_tokens": 4, "user_id": user}
                response = client.post("/v1/cv/rewrite", json=body)
                version = response.json().get("version") if response.status_code == 200 else None
                outcomes.append((began, time.monotonic(), response.status_code, version))
                i += 1

    workers = [threading.Thread(target=hammer, args=(w,)) for w in range(4)]
    for worker in workers:
        worker.start()
    time.sleep(1.0)
    registry.promote("tiny@2", "prod")
    swap = httpx.post(f"{server.url}/admin/reload", headers=auth, timeout=120)
    swapped_at = time.monotonic()
    time.sleep(1.0)
    stop.set()
    for worker in workers:
        worker.join(60)

    assert swap.status_code == 200
    outcome = swap.json()["variants"]
    assert [(o["outcome"], o["previous"], o["current"]) for o in outcome] == [("swapped", "tiny@1", "tiny@2")]
    statuses = [status for _, _, status, _ in outcomes]
    assert statuses and set(statuses) == {200}, f"{len(statuses) - statuses.count(200)} failed requests"
    assert any(v == 1 for *_, v in outcomes)
    after = [v for began, _, _, v in outcomes if began > swapped_at]
    assert after and set(after) == {2}
    info = 'cvml_model_info{model_name="tiny@2",variant="default",version="2"} 1.0'
    assert info in httpx.get(f"{server.url}/metrics").text

    registry.rollback("tiny", "prod")
    back = httpx.post(f"{server.url}/admin/reload", headers=auth, timeout=120).json()["variants"][0]
    assert (back["outcome"], back["current"]) == ("swapped", "tiny@1")
    again = httpx.post(f"{server.url}/admin/reload", headers=auth, timeout=120).json()["variants"][0]
    assert again["outcome"] == "unchanged"
    assert server.stop() == 0


def upstream_opener(url: str, tiny_base: Path):
    """What `--engine vllm` builds, pointed at an upstream that is here (a cvml server)."""

    def open_model(variant, ref):
        engine = UpstreamEngine(url, "default", 512, max_batch_size=4, max_queue=0)
        tokenizer = load_inference_tokenizer(ref.path)
        return ServedModel(variant, ref, tokenizer, engine, 512, release=engine.stop)

    return open_model


def test_upstream_engine_serves_the_same_answers_through_an_openai_server(tmp_path, tiny_base):
    upstream_spec = ServeSpec(
        model=str(tiny_base), port=0, max_new_tokens=64, log_db=str(tmp_path / "up.db"), device="cpu"
    )
    with BackgroundServer(upstream_spec) as upstream:
        front_spec = ServeSpec(model=str(tiny_base), port=0, max_new_tokens=64, log_db=str(tmp_path / "front.db"))
        with BackgroundServer(front_spec, opener=upstream_opener(upstream.url, tiny_base)) as front:
            body = {"text": "Led a team of five engineers", "task": "rewrite_bullet", "max_tokens": 12}
            direct = httpx.post(f"{upstream.url}/v1/cv/rewrite", json=body, timeout=60).json()
            proxied = httpx.post(f"{front.url}/v1/cv/rewrite", json=body, timeout=60).json()
            assert proxied["output"] == direct["output"] and proxied["usage"] == direct["usage"]

            chat = {"messages": CHAT, "max_tokens": 12, "temperature": 0}
            whole = httpx.post(f"{front.url}/v1/chat/completions", json=chat, timeout=60).json()
            streamed = httpx.post(f"{front.url}/v1/chat/completions", json={**chat, "stream": True}, timeout=60)
            chunks = [json.loads(l[6:]) for l in streamed.text.splitlines() if l.startswith("data: {")]
            text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
            assert text == whole["choices"][0]["message"]["content"]

            # The context check happens in front, as on cvml's engine.
            over = httpx.post(f"{front.url}/v1/cv/rewrite", json={**body, "text": "x " * 600}, timeout=60)
            assert over.status_code == 400 and over.json()["error"]["code"] == "context_length_exceeded"
            row = RequestLog(tmp_path / "front.db").query()[0]
            assert row["status"] == 200 and row["completion_tokens"] == direct["usage"]["completion_tokens"]


def test_cvml_serve_engine_openvino_serves_an_export_by_name_through_the_openai_client(tmp_path, tiny_base, tiny_data):
    """The command a user types: export, then `cvml serve NAME@N --engine openvino`; the
    official client gets a completion, the rewrite says grounding is off, /metrics counts it."""
    import openai

    from cvml.quantize.export import export
    from cvml.recipe import ExportSpec
    from cvml.registry import Registry

    home = tmp_path / "home"
    registry = Registry(home / "registry.db")
    registry.register(tiny_base, "tiny", "base")
    result = export("tiny@1", ExportSpec(format="openvino", weights="int8", data=str(tiny_data), eval_samples=4),
                    output=tmp_path / "ov", registry=registry)
    assert result.registered == "tiny@2"
    server = ServeProcess(["tiny@2", "--engine", "openvino"], home)
    try:
        assert server.info["engine"] == "openvino"
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
        answer = client.chat.completions.create(model="tiny@2", messages=[{"role": "user", "content": "Led a team"}],
                                                max_tokens=8, temperature=0)
        assert answer.usage.completion_tokens <= 8 and answer.choices[0].finish_reason in ("stop", "length")
        body = httpx.post(f"{server.url}/v1/cv/rewrite", json={"text": "Led a team of five engineers",
                                                               "task": "rewrite_bullet", "max_tokens": 16}, timeout=60).json()
        assert (body["model"], body["version"]) == ("tiny", 2) and body["guard"]["grounding"] == "off"
        metrics = httpx.get(f"{server.url}/metrics").text
        generated = [line for line in metrics.splitlines() if line.startswith("vllm:generation_tokens_total{")]
        assert generated and sum(float(line.rsplit(" ", 1)[1]) for line in generated) >= answer.usage.completion_tokens
    finally:
        assert server.stop() == 0
