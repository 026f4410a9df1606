"""`--json` output stays one clean document even when a library prints to stdout."""

from __future__ import annotations

import json
import sys


from cvml.cli.main import app
from cvml.registry import Registry


def test_library_chatter_goes_to_stderr_not_into_the_json(runner, monkeypatch, tiny_base):
    Registry().register(tiny_base, name="cv", kind="base")
    real_versions = Registry.versions

    def noisy_versions(self, *args, **kwargs):
        print("WARN  some library banner")  # what GPT-QModel does when peft imports it
        return real_versions(self, *args, **kwargs)

    monkeypatch.setattr(Registry, "versions", noisy_versions)
    result = runner.invoke(app, ["models", "list", "--json"])
    assert result.exit_code == 0, result.stderr
    assert [v["ref"] for v in json.loads(result.stdout)] == ["cv@1"]
    assert "some library banner" in result.stderr
    assert sys.stdout is not sys.stderr  # restored after the command
