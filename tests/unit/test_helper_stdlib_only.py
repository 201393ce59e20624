"""The helper is an island on a standard-library base: every module of reconciler/helper
imports the standard library, reconciler.common and reconciler.helper only, and every module
of reconciler/common the standard library and reconciler.common only, so no dependency
change can break the process that rolls back."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent.parent / "reconciler"
HELPER = PACKAGE / "helper"
COMMON = PACKAGE / "common"
MODULES = sorted(HELPER.rglob("*.py"))
BASE_MODULES = sorted(COMMON.rglob("*.py"))


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


def allowed(module: str, packages: tuple[str, ...] = ("common", "helper")) -> bool:
    """Whether `module` is the standard library or one of reconciler's `packages`."""
    top = module.partition(".")[0]
    ours = tuple(f"reconciler.{name}" for name in packages)
    return (
        top in sys.stdlib_module_names
        or module in ours
        or (module.startswith(tuple(f"{name}." for name in ours)))
    )


def test_the_helper_and_the_base_have_modules_to_check():
    assert HELPER / "operator.py" in MODULES
    assert COMMON / "config.py" in BASE_MODULES


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(HELPER)))
def test_helper_module_imports_only_the_standard_library(path: Path):
    outside = [
        f"{path.name}:{line}: {module}" for line, module in imports(path) if not allowed(module)
    ]
    assert outside == []


@pytest.mark.parametrize("path", BASE_MODULES, ids=lambda p: str(p.relative_to(COMMON)))
def test_base_module_imports_only_the_standard_library(path: Path):
    outside = [
        f"{path.name}:{line}: {module}"
        for line, module in imports(path)
        if not allowed(module, ("common",))
    ]
    assert outside == []


def test_the_check_refuses_a_third_party_or_agent_side_import():
    assert allowed("tomllib")
    assert allowed("os.path")
    assert allowed("reconciler.common.atomic")
    assert not allowed("yaml")
    assert not allowed("reconciler.core.errors")
    assert not allowed("reconciler")
    assert not allowed("reconciler.helperx")
    assert not allowed("reconciler.helper.operator", ("common",))
