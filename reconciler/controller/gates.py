"""Gates: checks on a built system before it is activated; any refusal stops the deploy.

Owns running the spec's `gates` after the build and before the helper is
asked to act. A `command` gate runs a program of the repository (argv, no
shell) in a checkout of the commit being deployed, with PULLNIX_NEW_SYSTEM and
PULLNIX_CURRENT_SYSTEM set; a non-zero exit refuses. The `vulnix` gate is
not implemented yet and refuses with a message saying so, rather than
letting a configured vulnerability check pass unchecked.

Must not: activate anything; a gate only says yes or no.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

from reconciler.core.errors import TerminalError, TransientError
from reconciler.core.model import Command, Gate

GATE_TIMEOUT = 600.0
_TAIL = 20


class GateRefused(TerminalError):
    reason = "GateRefused"


def run_gates(gates: Sequence[Gate], new_system: str, current_system: str | None,
              checkout: Path) -> None:
    """Run every gate in order; raise GateRefused naming the first that refuses."""
    for gate in gates:
        kind = gate.kind
        if isinstance(kind, Command):
            _command_gate(gate.name, kind, new_system, current_system, checkout)
        else:
            raise GateRefused(
                f"gate {gate.name!r}: the vulnix gate is not available in this version of "
                "pullnix; remove it from spec.gates or upgrade pullnix")


def _command_gate(name: str, command: Command, new_system: str, current_system: str | None,
                  checkout: Path) -> None:
    argv = list(command.argv)
    program = checkout / argv[0]
    if "/" in argv[0] and not argv[0].startswith("/") and program.is_file():
        argv[0] = str(program)
    env = {**os.environ, "PULLNIX_NEW_SYSTEM": new_system,
           "PULLNIX_CURRENT_SYSTEM": current_system or ""}
    try:
        done = subprocess.run(argv, cwd=checkout, env=env, capture_output=True, text=True,
                              timeout=GATE_TIMEOUT, check=False)
    except FileNotFoundError:
        raise GateRefused(f"gate {name!r}: {command.argv[0]!r} not found (relative paths are "
                          "taken from the repository root)") from None
    except PermissionError:
        raise GateRefused(f"gate {name!r}: {command.argv[0]!r} is not executable") from None
    except subprocess.TimeoutExpired:
        raise TransientError(f"gate {name!r}: no answer after {GATE_TIMEOUT:g}s",
                             reason="GateTimeout") from None
    if done.returncode != 0:
        output = (done.stdout + done.stderr).strip().splitlines()[-_TAIL:]
        detail = ("; output:\n" + "\n".join(output)) if output else ""
        raise GateRefused(f"gate {name!r} refused the new system (exit {done.returncode})"
                          f"{detail}")
