"""The package's promises about itself: dependencies agree, imports point down."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def setup_list(name: str) -> list[str]:
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return list(ast.literal_eval(node.value))
    raise AssertionError(f"{name} not found in setup.py")


def test_environment_yml_pip_section_matches_setup_py():
    text = (ROOT / "environment.yml").read_text()
    pip = re.search(r"^\s+- pip:\n((?:\s+- .*\n?)+)", text, re.M)
    assert pip, "environment.yml has no pip section"
    listed = [line.strip()[2:].strip() for line in pip.group(1).splitlines()]
    requirements = [item for item in listed if not item.startswith("-e")]
    assert sorted(requirements) == sorted(setup_list("INSTALL_REQUIRES"))
    assert any(item.startswith("-e") for item in listed)
    for conda in ("python=3.11", "pytorch", "mpi4py", "openmpi", "pytest"):
        assert re.search(rf"^\s+- {re.escape(conda)}", text, re.M), conda


def test_pytest_mpi_is_not_a_dependency():
    assert not any("pytest-mpi" in r for r in setup_list("INSTALL_REQUIRES"))


# Layers, bottom to top: a module imports only from its own layer or below,
# at module level, inside functions (lazy imports) and under TYPE_CHECKING.
LAYERS = ["errors", "bootstrap", "backends", "runtime", "safety", "report", "history", "runner",
          "plugins", "placement", "isolation", "session", "testing", "validation",
          "supervisor", "__init__", "cli"]
#: pure logic: no mpi4py or torch import at all, lazy ones included
PURE = {"errors", "bootstrap.settings", "bootstrap.netif", "bootstrap.slurm",
        "bootstrap.launchers", "safety.keeper",
        "report.results", "report.merge", "report.failures", "report.codec",
        "report.replay", "report.grouping", "report.rank_texts", "runner.markers",
        "session.collection", "runner.reruns", "plugins.companions", "plugins.writers",
        "plugins.draws", "placement.planner", "report.shape", "history.store",
        "history.queries", "supervisor.journal",
        "supervisor.relaunch", "supervisor.replay"}
#: loaded by pytest at start-up, with or without --with-mpi
ENTRY_POINTS = {"session.plugin", "testing.plugin", "supervisor.recorder", "runner.fixtures",
                "__init__"}
PACKAGE = ROOT / "mpidist"
MODULES = sorted(PACKAGE.rglob("*.py"))
MAX_LINES = 400


def dotted(path: Path) -> str:
    """``runner/merge.py`` -> ``runner.merge``; a package's ``__init__`` is the package."""
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


KNOWN = {dotted(p) for p in MODULES}


def imports_of(path: Path) -> tuple[set[str], set[str], set[str]]:
    """(mpidist modules imported anywhere, third-party names imported at module
    level, third-party names imported anywhere)."""
    here = dotted(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    ours: set[str] = set()
    top: set[str] = set()
    anywhere: set[str] = set()
    tree = ast.parse(path.read_text())
    toplevel = {id(n) for n in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1] if node.level > 1 else package
                stem = [*base, *(node.module.split(".") if node.module else [])]
            elif node.module and (node.module == "mpidist" or node.module.startswith("mpidist.")):
                stem = node.module.split(".")[1:]
            else:
                name = (node.module or "").split(".")[0]
                anywhere.add(name)
                if id(node) in toplevel:
                    top.add(name)
                continue
            for alias in node.names:  # ``from . import compat`` names a module
                candidate = ".".join([*stem, alias.name])
                ours.add(candidate if candidate in KNOWN else ".".join(stem) or "__init__")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("mpidist."):
                    ours.add(alias.name.split(".", 1)[1])
                else:
                    anywhere.add(alias.name.split(".")[0])
                    if id(node) in toplevel:
                        top.add(alias.name.split(".")[0])
    return ours, top, anywhere


def layer(module: str) -> int:
    return LAYERS.index(module.split(".")[0])


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_imports_point_down(path):
    name = dotted(path)
    ours, top, anywhere = imports_of(path)
    upward = sorted(m for m in ours if layer(m) > layer(name))
    assert not upward, f"{name} imports upward: {upward}"
    if name in PURE:
        assert not anywhere & {"mpi4py", "torch"}, f"{name} must stay pure"
    if name in ENTRY_POINTS:  # imported when inert
        assert not top & {"mpi4py", "torch"}, f"{name} imports mpi4py/torch at load"


def test_no_import_cycles():
    graph = {dotted(p): {m for m in imports_of(p)[0] if m in KNOWN} for p in MODULES}
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if nxt == node or (nxt != "__init__" and node.startswith(nxt + ".")):
                continue  # a package's own __init__ runs first anyway
            if state.get(nxt) == 1:
                cycle = [*trail[trail.index(nxt):], nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_module_size(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{dotted(path)} has {lines} lines (at most {MAX_LINES})"


def test_the_supervisor_loads_neither_mpi4py_nor_torch():
    import subprocess
    import sys

    code = ("import sys, mpidist.cli, mpidist.supervisor.relaunch, mpidist.supervisor.replay;"
            "print(sorted({'mpi4py', 'torch'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


def test_every_folder_says_its_job():
    for init in PACKAGE.glob("*/__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and len(doc.splitlines()) >= 2, f"{init} needs a docstring"


def test_every_public_name_of_mpidist_testing_resolves():
    # The package imports its submodules on first use: a name added to __all__
    # without its module in _WHERE would fail only when a user imports it.
    import mpidist.testing as testing

    assert sorted(testing._WHERE) == sorted(testing.__all__)
    for name in testing.__all__:
        assert getattr(testing, name).__module__ == f"mpidist.testing.{testing._WHERE[name]}"
