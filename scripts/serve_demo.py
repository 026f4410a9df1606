"""The demo's last step: start `cvml serve MODEL` on a free port, wait until it is ready,
make the web app's call (POST /v1/cv/rewrite), print the answer, then SIGTERM the server.

    python scripts/serve_demo.py tiny-cv

Exits non-zero when the server does not become ready, the call fails, or the server does
not drain and exit 0 on SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import queue
import signal
import subprocess
import sys
import threading
import time

import httpx

BULLET = "Responsible for managing a team of 5 engineers and the weekly release process"


def wait_ready(proc: subprocess.Popen, timeout_s: float) -> dict:
    """The JSON document `cvml serve --json` prints on stdout once every model is loaded."""
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    text, deadline = "", time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            text += lines.get(timeout=0.5)
        except queue.Empty:
            if proc.poll() is not None:
                raise SystemExit(f"cvml serve exited with code {proc.returncode} before it was ready")
            continue
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            continue
    raise SystemExit(f"cvml serve was not ready within {timeout_s:g} s")


def stop(proc: subprocess.Popen) -> int:
    """SIGTERM the server (it drains), kill it if it outlasts a minute; its exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = proc.wait()
    if code != 0:
        print(f"cvml serve exited with code {code} after SIGTERM", file=sys.stderr)
    return code


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="what to serve: a model folder, NAME or NAME@ALIAS")
    parser.add_argument("--text", default=BULLET, help="the CV text to rewrite")
    parser.add_argument("--task", default="rewrite_bullet", choices=["rewrite_bullet", "tailor_section", "summary"])
    parser.add_argument("--job-description", default=None)
    parser.add_argument("--engine", default="cvml", choices=["cvml", "vllm"], help="what generates behind cvml serve")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the server to be ready")
    args = parser.parse_args()

    proc = subprocess.Popen(
        [sys.executable, "-m", "cvml", "serve", args.model, "--port", "0", "--json", "--engine", args.engine],
        stdout=subprocess.PIPE, text=True
    )
    try:
        ready = wait_ready(proc, args.timeout)
        body = {"text": args.text, "task": args.task, "user_id": "demo-user"}
        if args.job_description:
            body["job_description"] = args.job_description
        response = httpx.post(f"{ready['url']}/v1/cv/rewrite", json=body, timeout=60)
        print(json.dumps(response.json(), indent=2))
        ok = response.status_code == 200
        if not ok:
            print(f"POST /v1/cv/rewrite answered {response.status_code}", file=sys.stderr)
    finally:
        code = stop(proc)
    return 0 if ok and code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
