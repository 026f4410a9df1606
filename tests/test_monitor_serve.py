"""What `cvml serve` keeps for the monitor: the sizes of the rewrite's two inputs (the log
holds them as one text) and the user's edited output sent with `/v1/feedback` — on a real
server with the tiny model, then read back by the monitor's reader and export."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import httpx
import pytest
from test_serve_app import shared_opener

from cvml.modelio import resolve_model
from cvml.monitor.export import export_rows
from cvml.monitor.logrows import open_log, read_window, split_input
from cvml.recipe import ServeSpec
from cvml.registry import Registry
from cvml.serve.context import _with_input_figures
from cvml.serve.server import BackgroundServer
from cvml.windows import Window

TEXT = "Team lead | Acorn Analytics | 2021-2024\n- Led a team of five engineers"
JOB = "Acorn Analytics is hiring a lead. Must have: Python, mentoring."


@pytest.fixture(scope="module")
def server(tmp_path_factory, loaded, tiny_base):
    folder = tmp_path_factory.mktemp("monitor-serve")
    registry = Registry(folder / "registry.db")
    registry.register(tiny_base, "tiny", "base")
    spec = ServeSpec(model="tiny@1", port=0, log_db=str(folder / "requests.db"), max_new_tokens=8)
    with BackgroundServer(spec, opener=shared_opener(loaded), resolver=lambda ref: resolve_model(ref, registry)) as s:
        yield s


def test_the_log_keeps_the_input_sizes_and_the_users_edit_redacted(server):
    with httpx.Client(base_url=server.url, timeout=60) as client:
        answer = client.post("/v1/cv/rewrite", json={"text": TEXT, "task": "tailor_section", "job_description": JOB,
                                                     "user_id": "u-7", "max_tokens": 6})  # fmt: skip
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert "inputs" not in body["checks"]  # the response's checks are the checks
        request_id = body["request_id"]
        edit = "Led a team of 5 engineers; reach me at jane.doe@example.com"
        kept = client.post("/v1/feedback", json={"request_id": request_id, "edited_text": edit})
        assert kept.status_code == 200 and kept.json() == {"request_id": request_id, "recorded": True}
        blank = client.post("/v1/feedback", json={"request_id": request_id, "edited_text": "   "})
        assert blank.status_code == 400 and "edited_text" in blank.json()["error"]["message"]
        nothing = client.post("/v1/feedback", json={"request_id": request_id})
        assert nothing.status_code == 400

    [row] = [r for r in server.ctx.request_log.query() if r["request_id"] == request_id]
    assert row["checks"]["inputs"] == {"text_chars": len(TEXT), "text_lines": 1, "job_description_chars": len(JOB)}
    assert row["edited_text"] == "Led a team of 5 engineers; reach me at <EMAIL_1>"
    assert row["accepted"] is None  # an edit is not a verdict; export takes it as the target all the same
    source, job, split = split_input(row["input_text"], row["checks"]["inputs"])
    assert split and source == TEXT and job == JOB

    now = datetime.now(timezone.utc)
    window = Window(now - timedelta(hours=1), now + timedelta(minutes=1))
    [request] = [r for r in read_window(open_log(server.ctx.request_log.path), window, "/v1/cv/rewrite") if r.request_id == request_id]
    assert (request.source, request.job_description, request.task) == (TEXT, JOB, "tailor_section")
    assert request.edited_text.endswith("<EMAIL_1>") and request.checked


def test_export_makes_the_edit_the_target(server, tmp_path):
    now = datetime.now(timezone.utc)
    result = export_rows(server.ctx.request_log.path, Window(now - timedelta(hours=1), now + timedelta(minutes=1)),
                         tmp_path / "raw.jsonl", include="edited")  # fmt: skip
    assert result.rows >= 1 and result.counts["target_user_edit"] == result.rows


def test_the_input_figures_ride_on_any_checks_and_leave_other_results_alone():
    wrapped = _with_input_figures(lambda output, source, job: {"fabrication": {"flagged": False}})
    assert wrapped("out", "a\nb", None) == {
        "fabrication": {"flagged": False}, "inputs": {"text_chars": 3, "text_lines": 1, "job_description_chars": 0}
    }
    assert _with_input_figures(lambda *args: None)("out", "a", "b") is None
