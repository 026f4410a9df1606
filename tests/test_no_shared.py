"""The repository never reads the development data folder beside it (users do not have it):
no source, test, benchmark, script, recipe or Makefile refers to that folder. Data the
project needs lives in the repository (cvml/safety/data/, tests/data/) with its licence."""

from __future__ import annotations

import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCOPE = ("cvml", "tests", "benchmarks", "scripts", "recipes", "Makefile", "README.md", "pyproject.toml")
SKIP_DIRS = {".git", ".venv", "__pycache__", ".pytest_cache", "artifacts", "runs", ".cvml"}
# Built from pieces so that this file does not match itself.
_WORD = "sha" + "red"
_Q = "[\"']"
PATTERN = re.compile("|".join((
    r"\.\./" + _WORD,                                      # the folder beside, relative
    _WORD + r"/data",                                      # its data folder
    r"/\s*" + _Q + _WORD + _Q,                             # a pathlib join with the folder's name
    _Q + r"\.\." + _Q + r"\s*,\s*" + _Q + _WORD + _Q,      # Path("..", name), os.path.join
    _Q + _WORD + _Q + r"\s*[,/]\s*" + _Q + "data",          # (name, "data")
)))


def _files():
    for top in SCOPE:
        path = ROOT / top
        if path.is_file():
            yield path
        elif path.is_dir():
            for folder, dirs, names in os.walk(path):
                dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info")]
                for name in names:
                    yield Path(folder) / name


def test_nothing_refers_to_the_shared_folder_beside_the_repository():
    me = Path(__file__).resolve()
    hits = []
    for path in _files():
        if path.resolve() == me:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue  # not a text file
        for number, line in enumerate(text.splitlines(), 1):
            if PATTERN.search(line):
                hits.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not hits, "files refer to the data folder beside the repository:\n" + "\n".join(hits)


def test_the_pattern_catches_the_old_forms():
    up = ".." + "/" + _WORD
    for line in (f"see {up}/DESIGN.md", f'ROOT.parent / "{_WORD}" / "data"', f'parents[2] / "{_WORD}"',
                 f"{_WORD}/data/cv-dotin-545", f'os.path.join("..", "{_WORD}", "data")'):
        assert PATTERN.search(line), line
    for line in ('tmp_path / "shared.db"', "a shared key only adds", "LogBar.shared()"):
        assert not PATTERN.search(line), line
