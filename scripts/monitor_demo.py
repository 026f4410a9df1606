"""The demo's production traffic, for `cvml monitor` to read: start `cvml serve MODEL`, send
the web app's rewrites of a curated split's CV texts (a few clients at once), send users'
feedback on some (accepted, rated, a few edited), then SIGTERM the server.

    python scripts/monitor_demo.py tiny-cv@prod --data data/tiny-cv --requests 96
    cvml monitor report --model tiny-cv@prod --reference training --window 1h

Exits non-zero when the server does not become ready, a request fails, or the server does
not drain and exit 0 on SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_demo import stop, wait_ready


def requests_from(data: Path, n: int, seed: int) -> list[dict]:
    """`n` rewrite requests from the split's records (their CV text and job description)."""
    from cvml.data.records import load_records

    records = []
    for split in ("test", "validation"):
        try:
            records += load_records(data, split)[0]
        except Exception:
            continue
    if not records:
        raise SystemExit(f"no records in {data} (run `cvml curate` first)")
    rng = random.Random(seed)
    chosen = [records[rng.randrange(len(records))] for _ in range(n)]
    return [
        {"text": r.source_text, "task": r.task, "user_id": f"demo-{r.group}", "max_tokens": 48,
         **({"job_description": r.job_description} if r.job_description else {})}
        for r in chosen
    ]  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="what to serve: a model folder, NAME or NAME@ALIAS")
    parser.add_argument("--data", default="data/tiny-cv", help="curated dataset folder the texts come from")
    parser.add_argument("--requests", type=int, default=96)
    parser.add_argument("--clients", type=int, default=4, help="requests in flight at once")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the server to be ready")
    args = parser.parse_args()

    bodies = requests_from(Path(args.data), args.requests, args.seed)
    proc = subprocess.Popen([sys.executable, "-m", "cvml", "serve", args.model, "--port", "0", "--json"],
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    ok = False
    try:
        url = wait_ready(proc, args.timeout)["url"]
        with httpx.Client(base_url=url, timeout=120) as client:
            with ThreadPoolExecutor(args.clients) as pool:
                answers = list(pool.map(lambda body: client.post("/v1/cv/rewrite", json=body), bodies))
            failed = [a.status_code for a in answers if a.status_code != 200]
            rng = random.Random(args.seed + 1)
            feedback = 0
            for answer in answers:
                if answer.status_code != 200 or rng.random() > 0.5:
                    continue
                body = {"request_id": answer.json()["request_id"], "accepted": rng.random() < 0.7,
                        "rating": rng.randint(1, 5)}  # fmt: skip
                if body["accepted"] and rng.random() < 0.3:
                    body["edited_text"] = answer.json()["output"].strip() or "Led the weekly release process"
                feedback += client.post("/v1/feedback", json=body).status_code == 200
        guards = {}
        for answer in answers:
            if answer.status_code == 200:
                action = answer.json()["guard"]["action"]
                guards[action] = guards.get(action, 0) + 1
        print(json.dumps({"requests": len(answers), "failed": failed, "feedback": feedback, "guard": guards}))
        ok = not failed
    finally:
        code = stop(proc)
    return 0 if ok and code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
