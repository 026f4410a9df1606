"""The layering of cvml, kept by a test: the import graph read from the source with `ast`.

Floors, bottom up:
- ground: the top-level modules (errors, paths, recipe, modelio, manifest, prompts, progress,
  quantization, variants, ...), `cvml.data` (records, splits, encoding), `cvml.storage`
  (SQLite / Postgres) and `cvml.registry` (versions, aliases, experiments). Imports nothing
  above it.
- middle: `cvml.safety` and `cvml.evaluation`, what several areas use. Imports the ground.
- areas: curate, train, quantize, bench, serve, abtest, tiny, monitor. Import the floors below and
  only the area → area arrows listed in ALLOWED_ARROWS: adding one is a visible decision.
- the CLI on top: nothing but the CLI (and `python -m cvml`) imports `cvml.cli`.

Every import counts, function-local and TYPE_CHECKING ones included: a lazy import is
still a dependency. Plugins named by string (the quantize methods' backends) are not
imports and are not seen here, by design.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "cvml"
MIDDLE = {"safety", "evaluation"}
GROUND_PACKAGES = {"data", "registry", "storage"}
AREAS = {"curate", "train", "quantize", "bench", "serve", "abtest", "tiny", "monitor"}
ALLOWED_ARROWS = {
    ("bench", "serve"),  # bench measures serve's engine in process
    ("bench", "tiny"),  # perf prompts from the synthetic generator when no eval data is given
    ("abtest", "serve"),  # online analysis reads serve's request log
    ("monitor", "serve"),  # drift and quality are read from serve's request log (and the sizes its checks log)
    ("monitor", "tiny"),  # simulated production traffic (tests, power benchmark) from the synthetic generator
}


def module_names(root: Path, package: str) -> dict[str, Path]:
    names = {}
    for path in root.rglob("*.py"):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """module -> the package's modules it imports (a submodule when `from pkg import sub`)."""
    modules = module_names(root, package)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        here = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = here.split(".")[: len(here.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            else:
                continue
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [m1, m2, ..., m1], or None."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def floor(module: str) -> tuple[str, str]:
    """(floor, room): ('ground', 'recipe'), ('middle', 'safety'), ('area', 'bench'), ('cli', 'cli')."""
    parts = module.split(".")
    if len(parts) == 1:
        return "ground", "cvml"
    top = parts[1]
    if top in ("cli", "__main__"):
        return "cli", top
    if top in MIDDLE:
        return "middle", top
    if top in AREAS:
        return "area", top
    if top in GROUND_PACKAGES or len(parts) == 2:
        return "ground", top
    raise AssertionError(f"{module}: not placed on a floor; add it to this test")


def layering_problems(graph: dict[str, set[str]]) -> list[str]:
    order = {"ground": 0, "middle": 1, "area": 2, "cli": 3}
    problems = []
    for source, targets in sorted(graph.items()):
        s_floor, s_room = floor(source)
        for target in sorted(targets):
            t_floor, t_room = floor(target)
            if t_floor == "cli" and s_floor != "cli":
                problems.append(f"{source} imports the CLI ({target}): libraries report through callbacks")
            elif order[t_floor] > order[s_floor]:
                problems.append(f"{source} ({s_floor}) imports {target} ({t_floor}), a floor above it")
            elif s_floor == t_floor == "area" and s_room != t_room and (s_room, t_room) not in ALLOWED_ARROWS:
                problems.append(f"{source} imports {target}: {s_room} → {t_room} is not an allowed area arrow")
    return problems


@pytest.fixture(scope="module")
def cvml_graph() -> dict[str, set[str]]:
    return import_graph(ROOT, "cvml")


def test_cvml_has_no_import_cycle(cvml_graph):
    assert find_cycle(cvml_graph) is None


def test_every_import_respects_the_floors_and_the_allowed_arrows(cvml_graph):
    assert layering_problems(cvml_graph) == []


def test_every_allowed_arrow_is_still_used(cvml_graph):
    graph = cvml_graph
    used = {(floor(s)[1], floor(t)[1]) for s, targets in graph.items() for t in targets}
    assert ALLOWED_ARROWS <= used, f"remove arrows nothing uses: {ALLOWED_ARROWS - used}"


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "cvml"
    for name, text in {"__init__.py": "", **files}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_a_cycle_through_a_lazy_import_is_found(tmp_path):
    root = _package(tmp_path, {
        "modelio.py": "from cvml.errors import E\n\ndef load():\n    from cvml.quantize.load import q\n",
        "errors.py": "class E(Exception): ...\n",
        "quantize/__init__.py": "",
        "quantize/load.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from cvml import modelio\n",
    })  # fmt: skip
    graph = import_graph(root, "cvml")
    assert find_cycle(graph) == ["cvml.modelio", "cvml.quantize.load", "cvml.modelio"]
    assert "cvml.modelio (ground) imports cvml.quantize.load (area), a floor above it" in layering_problems(graph)


def test_relative_imports_an_area_reaching_the_cli_and_unlisted_arrows_are_found(tmp_path):
    root = _package(tmp_path, {
        "train/__init__.py": "",
        "train/loop.py": "from . import outputs\nfrom cvml.cli._output import err\nfrom cvml.serve import engine\n",
        "train/outputs.py": "",
        "serve/__init__.py": "",
        "serve/engine.py": "",
        "cli/__init__.py": "",
        "cli/_output.py": "",
    })  # fmt: skip
    graph = import_graph(root, "cvml")
    assert graph["cvml.train.loop"] == {"cvml.train.outputs", "cvml.cli._output", "cvml.serve.engine"}
    assert find_cycle(graph) is None
    assert layering_problems(graph) == [
        "cvml.train.loop imports the CLI (cvml.cli._output): libraries report through callbacks",
        "cvml.train.loop imports cvml.serve.engine: train → serve is not an allowed area arrow",
    ]


@pytest.mark.parametrize("module", ["cvml.recipe", "cvml.modelio", "cvml.manifest", "cvml.errors", "cvml.paths", "cvml.prompts"])
def test_the_named_ground_floor_modules_import_no_area(module, cvml_graph):
    graph = cvml_graph
    seen, todo = set(), [module]
    while todo:  # everything reachable from it, not just its direct imports
        for target in graph[todo.pop()] - seen:
            seen.add(target)
            todo.append(target)
    assert sorted(t for t in seen if floor(t)[0] != "ground") == []
