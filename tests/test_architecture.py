"""The shape of the code: no import cycles, a core that loads neither torch nor Textual,
one package per stage and per family, and a worker that reads only typed parameters."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "medialab_tui"

# The worker's torch side: the only modules that import torch or diffusers when
# imported (stage `run.py` modules import them lazily, inside the job).
TORCH_MODULES = {
    "medialab_tui.engine.worker.generate",
    "medialab_tui.engine.worker.loading",
    "medialab_tui.engine.worker.device",
    "medialab_tui.engine.interpolation.learned",  # the RIFE network (torch modules)
}
TORCH_PACKAGES = ("medialab_tui.engine.families.",)  # each family's load.py


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules `name` imports, at module level, inside functions or for type
    checking only (a cycle there still ties the two modules together)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" for alias in node.names]
            targets = [t if t in modules else base for t in targets]
        found.update(t for t in targets if t in modules and t != name)
    return found


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return []


def test_no_module_imports_itself_through_others() -> None:
    modules = all_modules()
    graph = {name: imports_of(name, path, modules) for name, path in modules.items()}
    assert sum(len(v) for v in graph.values()) > 100  # the walk really sees the imports
    cycle = find_cycle(graph)
    assert not cycle, "import cycle: " + " → ".join(cycle)


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) == []


def _core_modules() -> list[str]:
    return [
        name
        for name in all_modules()
        if name.startswith(("medialab_tui.engine", "medialab_tui.store", "medialab_tui.interop"))
        and name not in TORCH_MODULES
        and not (name.startswith(TORCH_PACKAGES) and name.endswith(".load"))
        and not name.endswith("__main__")
    ]


def test_engine_and_store_load_neither_torch_nor_textual() -> None:
    """Every module of engine/, store/ and interop/ but the worker's torch side imports light:
    the CLI and the TUI must start fast (SPEC §2)."""
    names = _core_modules()
    assert len(names) > 40
    code = (
        "import importlib, json, sys\n"
        f"for name in {names!r}:\n"
        "    importlib.import_module(name)\n"
        "heavy = ('torch', 'diffusers', 'transformers', 'textual')\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in heavy)))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert json.loads(proc.stdout) == []


def test_every_stage_is_one_package_with_a_spec_and_a_run() -> None:
    from medialab_tui.engine.stages import STAGES

    folders = sorted(p.parent.name for p in (PACKAGE / "engine" / "stages").glob("*/spec.py"))
    assert folders == sorted(STAGES)
    for stage in STAGES.values():
        run = PACKAGE / "engine" / "stages" / stage.type / "run.py"
        tree = ast.parse(run.read_text(encoding="utf-8"))
        assert "run" in {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}, run


def test_every_family_is_one_package() -> None:
    from medialab_tui.engine.families import FAMILIES

    folders = sorted(p.parent.name for p in (PACKAGE / "engine" / "families").glob("*/__init__.py"))
    assert folders == sorted(FAMILIES)
    for family in FAMILIES.values():
        runnable = any(family.archs.values())
        assert (PACKAGE / "engine" / "families" / family.name / "load.py").exists() == runnable


WORKER_SIDE = [
    *sorted((PACKAGE / "engine" / "stages").glob("*/run.py")),
    *sorted((PACKAGE / "engine" / "worker").glob("*.py")),
]


@pytest.mark.parametrize("path", WORKER_SIDE, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_the_worker_reads_no_untyped_params(path: Path) -> None:
    """Stage parameters reach the worker's code as the stage's model: no `params[...]`,
    `params.get(...)`, no raw item, extras or model dicts."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    raw = []
    for node in ast.walk(tree):
        target = None
        if isinstance(node, ast.Subscript):
            target = node.value
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr == "get":
                target = node.func.value
        text = ast.unparse(target) if target is not None else ""
        if text.split(".")[-1] in ("params", "item", "extras", "model"):
            raw.append(f"{path.name}:{node.lineno}: {ast.unparse(node)}")
    assert not raw, raw
