"""The Next.js example (examples/nextjs) as a product team runs it: its npm dependencies
installed from the lockfile, `next build`, a real `cvml serve` on the tiny model (with an API
key) and the built app (`next start`) on 127.0.0.1, the live version read from Postgres.

The route handlers are called over HTTP (the checked JSON, the streamed draft through the AI
SDK and through the `openai` client), and the page is driven in Debian's Chromium through
Playwright (never a downloaded browser); its screenshot lands in the test's tmp_path.
Without npm, Node or Chromium these tests fail, never skip (`make test` installs Chromium).
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from serve_process import ServeProcess

pytestmark = [pytest.mark.web, pytest.mark.slow]

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "nextjs"
BULLET = "Led a team of five engineers to ship the billing system"
GUARD_ACTIONS = {"passed", "retried", "flagged", "blocked"}
CHECKS = {"fabrication", "pii_leak", "protected_attributes", "abusive", "injection"}
# What makes a build stale: everything of the example but what npm and next write.
_GENERATED = {"node_modules", ".next", "next-env.d.ts"}


def _tool(name: str, hint: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"`{name}` is not on PATH: the Next.js example cannot be tested ({hint})", pytrace=False)
    return path


def _run(args: list[str], what: str, timeout_s: float) -> None:
    env = {**os.environ, "NEXT_TELEMETRY_DISABLED": "1", "CI": "1"}
    try:
        done = subprocess.run(args, cwd=EXAMPLE, env=env, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{what} in examples/nextjs took over {timeout_s:.0f} s:\n{(e.stdout or '')[-3000:]}", pytrace=False)
    if done.returncode != 0:
        pytest.fail(f"{what} in examples/nextjs failed (exit {done.returncode}):\n"
                    f"{(done.stdout + done.stderr)[-4000:]}", pytrace=False)


def _digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for path in sorted(paths):
        h.update(str(path.relative_to(EXAMPLE)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


@pytest.fixture(scope="session")
def web_build() -> Path:
    """examples/nextjs with its dependencies installed (`npm ci`) and built (`next build`).

    Each step is skipped when its stamp matches what it was made from (the lockfile; every
    source file), so a second run starts at once and a fresh clone does both."""
    node = _tool("node", "install Node.js 20.9 or later")
    _tool("npm", "it comes with Node.js")
    major, minor = (int(x) for x in subprocess.run([node, "-p", "process.versions.node"], capture_output=True,
                                                   text=True, check=True).stdout.split(".")[:2])
    if (major, minor) < (20, 9):
        pytest.fail(f"Node {major}.{minor} is too old for Next.js 16: install Node.js 20.9 or later", pytrace=False)

    installed = EXAMPLE / "node_modules" / ".cvml-npm-ci"
    lock = _digest([EXAMPLE / "package.json", EXAMPLE / "package-lock.json"])
    if not installed.is_file() or installed.read_text() != lock:
        _run(["npm", "ci", "--no-audit", "--no-fund"], "`npm ci`", timeout_s=900)
        installed.write_text(lock)

    sources = [p for p in EXAMPLE.rglob("*") if p.is_file() and not _GENERATED & set(p.relative_to(EXAMPLE).parts)]
    built = EXAMPLE / ".next" / "cvml-build"
    source = _digest(sources)
    if not built.is_file() or built.read_text() != source:
        _run(["npm", "run", "build"], "`next build`", timeout_s=900)
        built.write_text(source)
    return EXAMPLE


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NextServer:
    """`next start` on a free port of 127.0.0.1, with exactly the environment given."""

    def __init__(self, app: Path, env: dict[str, str], log: Path):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log
        self._log = open(log, "w")  # noqa: SIM115 - open while the process runs
        base = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
        self.proc = subprocess.Popen(
            [str(app / "node_modules" / ".bin" / "next"), "start", "-H", "127.0.0.1", "-p", str(self.port)],
            cwd=app, env={**base, "NODE_ENV": "production", "NEXT_TELEMETRY_DISABLED": "1", **env},
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        import httpx

        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"next start exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/api/rewrite", timeout=2).status_code == 405:  # up: POST only
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"next start did not answer within 60 s:\n{self.log()}"
            time.sleep(0.2)

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)  # next and any worker it started
            self.proc.wait(20)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        finally:
            self._log.close()


def _fresh_database(pg_url: str) -> Iterator[str]:
    """A new, empty database on the test server; dropped afterwards."""
    import psycopg

    parts = urlsplit(pg_url)
    name = f"web_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(urlunsplit(parts._replace(path="/postgres")), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield urlunsplit(parts._replace(path=f"/{name}"))
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def stack(web_build, tiny_base, pg_url, runner, tmp_path_factory):
    """cvml serve (tiny-cv@prod from a registry on Postgres, behind an API key) and the built app."""
    from cvml.cli.main import app
    from cvml.storage import Database

    root = tmp_path_factory.mktemp("web")
    key = secrets.token_urlsafe(24)
    for db_url in _fresh_database(pg_url):
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("CVML_DB_URL", db_url)
            mp.setenv("CVML_HOME", str(root / "cli-home"))
            for args in (["db", "upgrade"], ["models", "register", str(tiny_base), "--name", "tiny-cv", "--kind", "base"],
                         ["models", "promote", "tiny-cv@1", "--alias", "prod"]):
                result = runner.invoke(app, [*args, "--json"])
                assert result.exit_code == 0, f"cvml {' '.join(args)}: {result.stderr}"
            Database.dispose(db_url)
        serve = ServeProcess(["tiny-cv@prod", "--max-new-tokens", "24", "--device", "cpu"], root / "serve-home",
                             env={"CVML_DB_URL": db_url, "CVML_API_KEY": key, "CVML_LOG_KEY": secrets.token_hex(32)})
        web = None
        try:
            assert serve.info["variants"] == {"default": "tiny-cv@1"}, serve.info
            web = NextServer(web_build, {"CVML_BASE_URL": f"{serve.url}/v1", "CVML_API_KEY": key, "CVML_DB_URL": db_url},
                             root / "next.log")
            yield {"web": web, "serve": serve, "key": key}
        finally:
            if web is not None:
                web.stop()
            serve.stop()


def _stream(client, url: str, body: dict) -> tuple[list[str], str]:
    """(chunks as they arrived, content type) of a streamed POST."""
    with client.stream("POST", url, json=body) as response:
        assert response.status_code == 200, response.read().decode()
        return list(response.iter_text()), response.headers["content-type"]


def test_rewrite_route_answers_with_the_checked_rewrite_and_its_verdict(stack):
    import httpx

    web = stack["web"]
    with httpx.Client(base_url=web.url, timeout=120) as client:
        response = client.post("/api/rewrite", json={"text": BULLET})
        assert response.status_code == 200, response.text
        answer = response.json()
        assert isinstance(answer["output"], str)
        assert (answer["model"], answer["version"], answer["variant"]) == ("tiny-cv", 1, "default")
        assert set(answer["checks"]) == CHECKS
        assert all(isinstance(check["flagged"], bool) for check in answer["checks"].values())
        guard = answer["guard"]
        assert guard["action"] in GUARD_ACTIONS and guard["attempts"] >= 1 and guard["grounding"] == "strict"
        if guard["action"] == "blocked":
            assert answer["output"] == BULLET

        # With a job description the bullet is tailored to it (cvml needs it for that task).
        tailored = client.post("/api/rewrite", json={"text": BULLET, "job_description": "Billing platform lead"})
        assert tailored.status_code == 200, tailored.text

        # The route checks its body before calling cvml, with OpenAI's error envelope.
        for body in ({}, {"text": "   "}, {"text": BULLET, "job_description": 3}):
            refused = client.post("/api/rewrite", json=body)
            assert refused.status_code == 400, refused.text
            assert refused.json()["error"]["param"] in ("text", "job_description")


def test_streamed_draft_through_the_ai_sdk_and_the_openai_client(stack):
    """Both routes stream the model's greedy answer to cvml's own prompt for the task: the text
    equals a non-streamed chat completion of `cvml.prompts.build_messages` (so the example's
    copy of the prompt stays in step with cvml's)."""
    import httpx

    from cvml.prompts import build_messages

    web, serve = stack["web"], stack["serve"]
    with httpx.Client(base_url=web.url, timeout=120) as client:
        started = time.monotonic()
        chunks, content_type = _stream(client, "/api/rewrite", {"text": BULLET, "stream": True})
        sdk_s = time.monotonic() - started
        openai_chunks, openai_type = _stream(client, "/api/rewrite/openai", {"text": BULLET})
    assert content_type.startswith("text/plain") and openai_type.startswith("text/plain")
    draft = "".join(chunks)
    assert draft.strip(), "the streamed draft is empty"
    assert len(chunks) >= 2, f"the draft came in one piece, not streamed: {chunks!r}"
    assert "".join(openai_chunks) == draft

    direct = httpx.post(
        f"{serve.url}/v1/chat/completions", timeout=120, headers={"authorization": f"Bearer {stack['key']}"},
        json={"model": "default", "messages": build_messages("rewrite_bullet", BULLET), "temperature": 0},
    )
    assert direct.status_code == 200, direct.text
    assert direct.json()["choices"][0]["message"]["content"] == draft
    print(f"draft: {len(chunks)} chunks in {sdk_s:.2f} s")


@pytest.fixture
def misconfigured(web_build, stack, tmp_path):
    """The same build, started with a wrong API key and no database URL."""
    web = NextServer(web_build, {"CVML_BASE_URL": stack["serve"].url, "CVML_API_KEY": "not-the-key"},
                     tmp_path / "next.log")
    yield web
    web.stop()


def test_without_a_database_or_with_a_wrong_key_the_app_says_so(misconfigured):
    import httpx

    with httpx.Client(base_url=misconfigured.url, timeout=60) as client:
        page = client.get("/")
        assert page.status_code == 200
        assert "No database configured (CVML_DB_URL is not set)" in page.text
        # cvml's 401 comes through as a 401 with its message: JSON, or the stream's first answer.
        for body, path in (({"text": BULLET}, "/api/rewrite"), ({"text": BULLET, "stream": True}, "/api/rewrite"),
                           ({"text": BULLET}, "/api/rewrite/openai")):
            response = client.post(path, json=body)
            assert response.status_code == 401, (path, body, response.text)
            assert response.json()["error"]["message"], response.text


def test_the_page_in_chromium_streams_the_rewrite_with_its_verdict_and_the_live_version(stack, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    chromium = _tool("chromium", "Debian's package: apt-get install -y chromium (make test does)")
    web = stack["web"]
    problems: list[str] = []
    with sync_playwright() as p:
        try:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        except Exception as e:  # noqa: BLE001 - the reason is the failure
            pytest.fail(f"Chromium ({chromium}) does not start under Playwright: {e}", pytrace=False)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 900})
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("console", lambda m: problems.append(f"console: {m.text}") if m.type == "error" else None)
            page.on("response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None)
            page.goto(web.url)

            live = page.get_by_test_id("live-model")
            expect(live).to_have_attribute("data-status", "ok")
            expect(live).to_contain_text("tiny-cv@1")
            expect(live).to_contain_text("tiny-cv@prod")

            # Record every text the draft shows while it streams, to see it grow.
            page.evaluate("""() => {
                window.draftTexts = [];
                new MutationObserver(() => {
                    const d = document.querySelector('[data-testid=draft] .draft');
                    if (d && d.textContent) window.draftTexts.push(d.textContent);
                }).observe(document.body, {subtree: true, childList: true, characterData: true});
            }""")
            page.get_by_label("CV bullet").fill(BULLET)
            page.get_by_role("button", name="Rewrite").click()

            draft = page.get_by_test_id("draft")
            expect(draft).to_have_attribute("data-state", "done", timeout=120_000)
            verdict = page.get_by_test_id("verdict")
            expect(verdict).to_be_visible(timeout=120_000)
            action = verdict.get_attribute("data-action")
            assert action in GUARD_ACTIONS
            expect(page.get_by_test_id("guard-action")).to_have_text(action)
            for check in ("Fabrication", "Personal data", "Protected attributes", "Abusive language",
                          "Prompt injection in the inputs"):
                expect(page.get_by_test_id(f"check-{check}")).to_be_visible()
            expect(page.get_by_test_id("answered-by")).to_have_text("tiny-cv@1")
            shown = draft.locator(".draft").inner_text()
            if action in ("flagged", "blocked"):
                assert shown.startswith("Withheld"), shown
            else:
                assert shown.strip(), "no draft appeared"
            seen = page.evaluate("window.draftTexts")
            assert seen and any(len(t) < len(seen[-1]) for t in seen if not t.startswith("Withheld")), (
                f"the draft did not grow as it streamed: {seen!r}")
            expect(page.get_by_role("button", name="Rewrite")).to_be_enabled()

            shot = tmp_path / "nextjs-example.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
            print(f"screenshot: {shot}")
            html = page.content()
        finally:
            browser.close()
    assert not problems, problems
    # Server-side only: neither the key nor cvml's address reaches the browser.
    assert stack["key"] not in html and stack["serve"].url not in html
    bundles = [p.read_text(errors="replace") for p in (EXAMPLE / ".next" / "static").rglob("*.js")]
    assert bundles and not any(re.search(r"CVML_(BASE_URL|API_KEY|DB_URL)", text) for text in bundles)
