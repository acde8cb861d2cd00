"""Arrows point down: the library rooms import nothing from the CLI, which sits on top of them (module-level
imports and lazy ones inside functions alike), build no argparse Namespace, and never swap sys.stdout."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "instantid"
FRONT_END = "instantid.cli"


def module_name(path: Path) -> str:
    parts = ["instantid", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in the file, wherever it is (functions included); for
    `from X import Y`, both X and X.Y (Y may be a module)."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - (node.level - 1)] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            found.append((node.lineno, module))
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return found


def library_files() -> list[Path]:
    """Every module but the CLI's own and the `python -m instantid` entry point."""
    return [path for path in sorted(PACKAGE.rglob("*.py"))
            if "cli" not in path.relative_to(PACKAGE).parts[:1] and path.name != "__main__.py"]


def test_the_walk_sees_relative_and_lazy_imports(tmp_path):
    assert module_name(PACKAGE / "serving" / "engine.py") == "instantid.serving.engine"
    lazy = imports(PACKAGE / "serving" / "engine.py")
    assert any(name == "instantid.face.backend_rule" for _, name in lazy)  # imported inside Engine.__init__
    assert len(library_files()) > 50


def test_no_library_module_imports_the_cli():
    offenders = [f"{path.relative_to(PACKAGE)}:{line} imports {name}" for path in library_files()
                 for line, name in imports(path) if name == FRONT_END or name.startswith(FRONT_END + ".")]
    assert offenders == []


def test_no_namespace_built_and_no_stdout_swapped_outside_the_cli():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        in_cli = path.relative_to(PACKAGE).parts[0] == "cli"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            name = node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else None
            if name == "redirect_stdout":
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno} redirect_stdout")
            called = node.func if isinstance(node, ast.Call) else None
            callee = called.attr if isinstance(called, ast.Attribute) else getattr(called, "id", None)
            if callee == "Namespace" and not in_cli:
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno} builds a Namespace")
    assert offenders == []
