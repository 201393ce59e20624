"""What starting each process loads: resident memory is mostly the modules imported.

The helper stays resident on every machine, and the agent too: a module that pulls in
OpenSSL (`hashlib`, `ssl`) or the whole HTTP client (`http.client`, `email`) costs
megabytes on each of them. These are loaded only where they are used: the helper's
HTTP health check, the agent's questions to Prometheus (only with waves), and the
exporters of traces (only when tracing is configured). bench/ measures the memory
itself; this keeps a stray top-level import from bringing them back."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def loaded(statement: str, modules: tuple[str, ...]) -> list[str]:
    """Which of `modules` a fresh interpreter has imported after `statement`."""
    probe = (
        f"{statement}\nimport json, sys\n"
        f"print(json.dumps(sorted(m for m in {list(modules)!r} if m in sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    return list(json.loads(result.stdout))


@pytest.mark.parametrize(
    ("program", "statement", "absent"),
    [
        ("pullnix-helper", "import reconciler.helper.main", ("_hashlib", "ssl", "http.client")),
        (
            "pullnix agent",
            "import reconciler.cli.main, reconciler.controller.loop",
            ("http.client", "email.message"),
        ),
    ],
)
def test_a_process_starts_without_the_modules_it_loads_only_when_used(
    program: str, statement: str, absent: tuple[str, ...]
) -> None:
    assert loaded(statement, absent) == [], f"{program} imports them at start"


def test_the_probe_sees_a_module_that_is_imported() -> None:
    assert loaded("import http.client", ("http.client", "ssl")) == ["http.client", "ssl"]
