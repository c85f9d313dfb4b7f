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


# Layers, bottom to top. A module may import only from its own layer or below.
LAYERS = [
    {"errors", "env", "journal", "launch"},
    {"world", "netif", "agree", "signals", "probes"},
    {"store", "consensus", "merge", "slurm", "mpi4py_pg"},
    {"process_group", "wire", "output"},
    {"runtime", "gather", "watchdog", "hang"},
    {"plugin", "fixtures"},
    {"testing"},  # the subpackage mpidist.testing
    {"validation"},  # the subpackage mpidist.validation (a pytest suite)
    {"session", "replay", "supervisor"},
    {"cli"},
    {"__init__"},
]
PURE = {"errors", "env", "world", "netif", "consensus", "merge", "wire", "journal", "launch",
        "slurm",
        "supervisor", "replay"}


def module_imports(path: Path) -> tuple[set[str], set[str]]:
    """(mpidist modules imported, third-party top-level names imported at module level)."""
    ours, theirs = set(), set()
    tree = ast.parse(path.read_text())
    for node in tree.body:
        if isinstance(node, ast.If):  # TYPE_CHECKING blocks do not run
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level == 2 or (node.level == 1 and path.parent.name in SUBPACKAGES):
                # inside a subpackage: ``..x`` is mpidist, ``.x`` is the subpackage
                if node.level == 1:
                    ours.add(path.parent.name)
                elif node.module:
                    ours.add(node.module.split(".")[0])
                else:
                    ours.update(alias.name for alias in node.names)
            elif node.level == 1:
                if node.module:
                    ours.add(node.module.split(".")[0])
                else:
                    ours.update(alias.name for alias in node.names)
            elif node.module == "mpidist":  # absolute imports of ours count too
                ours.update(alias.name for alias in node.names)
            elif node.module and node.module.startswith("mpidist."):
                ours.add(node.module.split(".")[1])
            elif node.module:
                theirs.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            theirs.update(alias.name.split(".")[0] for alias in node.names)
    return ours, theirs


SUBPACKAGES = ("testing", "validation")
MODULES = sorted((ROOT / "mpidist").glob("*.py")) + [
    path for sub in SUBPACKAGES for path in sorted((ROOT / "mpidist" / sub).glob("*.py"))]


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.relative_to(ROOT / "mpidist").as_posix())
def test_imports_point_down(path):
    name = path.parent.name if path.parent.name in SUBPACKAGES else path.stem
    layer = next(i for i, names in enumerate(LAYERS) if name in names)
    allowed = set().union(*LAYERS[: layer + 1])
    ours, theirs = module_imports(path)
    assert ours <= allowed, f"{path.stem} imports upward: {sorted(ours - allowed)}"
    if path.stem in PURE:
        assert not theirs & {"mpi4py", "torch"}, f"{path.stem} must stay pure"
    if path.stem in {"plugin", "fixtures", "__init__"}:  # imported when inert
        assert not theirs & {"mpi4py", "torch"}
