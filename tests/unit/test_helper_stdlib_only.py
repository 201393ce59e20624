"""The helper is an island: every module of reconciler/helper imports the standard library
and reconciler.helper only, so no dependency change can break the process that rolls back."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

HELPER = Path(__file__).parent.parent.parent / "reconciler" / "helper"
MODULES = sorted(HELPER.rglob("*.py"))


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in `path`, relative ones resolved."""
    package = ".".join(path.relative_to(HELPER.parent.parent).with_suffix("").parts)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                found.append((node.lineno, f"{base}.{node.module}" if node.module else base))
            else:
                found.append((node.lineno, node.module or ""))
    return found


def allowed(module: str) -> bool:
    top = module.partition(".")[0]
    return top in sys.stdlib_module_names or module == "reconciler.helper" or (
        module.startswith("reconciler.helper."))


def test_the_helper_has_modules_to_check():
    assert HELPER / "config.py" in MODULES


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(HELPER)))
def test_helper_module_imports_only_the_standard_library(path: Path):
    outside = [f"{path.name}:{line}: {module}" for line, module in imports(path)
               if not allowed(module)]
    assert outside == []


def test_the_check_refuses_a_third_party_or_agent_side_import():
    assert allowed("tomllib")
    assert allowed("os.path")
    assert allowed("reconciler.helper.atomic")
    assert not allowed("yaml")
    assert not allowed("reconciler.core.errors")
    assert not allowed("reconciler")
    assert not allowed("reconciler.helperx")
