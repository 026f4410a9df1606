"""`cvml serve ... --port 0 --json` as a child process, for the tests that need a real server."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path


class ServeProcess:
    """A `cvml serve` child with its own CVML_HOME; `info` is its ready line, `url` its address.

    Args:
        args: what follows `cvml serve` (the port and --json are added).
        env: extra environment (e.g. CVML_DB_URL shared by replicas).
        wait: wait for the ready line here; False to start several, then `wait_ready()` each.
    """

    def __init__(self, args: list[str], home: Path, env: dict[str, str] | None = None, timeout_s: float = 240,
                 wait: bool = True, name: str = "cvml serve"):
        home.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.stderr_path = home / "serve.stderr"
        self._stderr = open(self.stderr_path, "w")  # noqa: SIM115 - open while the process runs
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cvml", "serve", *args, "--port", "0", "--json"],
            stdout=subprocess.PIPE, stderr=self._stderr, text=True,
            env={**os.environ, "CVML_HOME": str(home), **(env or {})},
        )
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [self._lines.put(line) for line in self.proc.stdout], daemon=True).start()
        self.info: dict = {}
        self.url = ""
        if wait:
            self.wait_ready(timeout_s)

    def wait_ready(self, timeout_s: float = 240) -> ServeProcess:
        text, deadline = "", time.monotonic() + timeout_s
        while True:
            try:
                text += self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
                self.info = json.loads(text)
                break
            except json.JSONDecodeError:
                continue
            except queue.Empty:
                self.proc.kill()
                raise AssertionError(f"{self.name}: no ready line; stderr:\n{self.stderr()}") from None
        self.url = self.info["url"]
        return self

    def stop(self, timeout_s: float = 60) -> int:
        """SIGTERM: the server drains, closes its request log (writing what is queued) and exits."""
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        finally:
            self._stderr.close()

    def stderr(self) -> str:
        if not self._stderr.closed:
            self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")
