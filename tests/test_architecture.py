"""The architecture: import contracts, public surfaces, module and function sizes.

The contracts live in pyproject.toml ([tool.importlinter]) and import-linter checks them; the
rest is read from the source with ``ast``.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "edvis"
MODULE_LINES = 500
FUNCTION_LINES = 80


def test_the_import_contracts_hold():
    lint = Path(sys.executable).with_name("lint-imports")
    proc = subprocess.run([str(lint), "--config", str(REPO / "pyproject.toml")], cwd=REPO,
                          capture_output=True, text=True, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 kept, 0 broken" in proc.stdout


def test_every_part_of_the_package_is_in_a_layer():
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]
    layers = next(c for c in config["contracts"] if c["type"] == "layers")["layers"]
    named = {name.strip() for layer in layers for name in layer.split("|")}
    parts = {f"edvis.{p.stem if p.is_file() else p.name}" for p in PACKAGE.iterdir()
             if (p.is_dir() and (p / "__init__.py").is_file()) or (p.suffix == ".py" and not p.name.startswith("__"))}
    assert parts == named


def _edvis_imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, module, names) of every ``from edvis... import`` and ``import edvis...`` in a file."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "edvis":
            out.append((node.lineno, node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name, []) for a in node.names if a.name.split(".")[0] == "edvis"]
    return out


def _public(module: str) -> set[str]:
    return set(getattr(importlib.import_module(module), "__all__", ()))


def test_tests_import_only_the_public_surface():
    """A test imports a subpackage's ``__all__``, or a module that ``__all__`` names."""
    wrong = []
    for path in sorted((REPO / "tests").rglob("*.py")):
        for line, module, names in _edvis_imports(path):
            parts = module.split(".")
            if len(parts) == 3 and parts[2] not in _public(".".join(parts[:2])):
                wrong.append(f"{path.relative_to(REPO)}:{line}: {module} is not a public module")
            elif len(parts) > 3:
                wrong.append(f"{path.relative_to(REPO)}:{line}: {module}")
            elif len(parts) == 2 and (PACKAGE / parts[1] / "__init__.py").is_file():
                hidden = [n for n in names if n not in _public(module)]
                if hidden:
                    wrong.append(f"{path.relative_to(REPO)}:{line}: {module} does not export {hidden}")
    assert wrong == []


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: p.relative_to(REPO).as_posix())
def test_modules_and_functions_stay_small(path: Path):
    text = path.read_text(encoding="utf-8")
    assert text.count("\n") <= MODULE_LINES, f"{path.name} has {text.count(chr(10))} lines"
    long = [f"{node.name} ({node.end_lineno - node.lineno + 1} lines)" for node in ast.walk(ast.parse(text))
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno + 1 > FUNCTION_LINES]
    assert long == []
