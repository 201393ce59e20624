"""The helper's fault-injection test hook: killing itself at a named point of an operation.

Owns `PULLNIX_HELPER_CRASH_AT=<name>`, which makes the helper SIGKILL itself,
once, at that point: a state name (`Pending`, `Activating`, `Verifying`,
`Committing`, `RollingBack`: as that state is entered, after it is journaled
if it has anything to do; `Succeeded`, `RolledBack`, `Failed`: after the
operation is archived, before the journal is cleared) or a step name
(`activate`, `check`, `confirm`, `set-profile`, `install-boot`, `record`,
`restore-profile`, `reactivate`, `restore-boot`: right after the step is
done, before its outcome is journaled; `prune`: after retention, before the
operation is archived). `CRASH_POINTS` lists every name (the states and
the effects' steps derived, the shell's own steps named), so the crash tests
can check they cover each one. Never set it in production.

Must not: decide where the points are (the operator's worker calls
`crash_point` at each) or do anything but kill the process when asked to.
"""

from __future__ import annotations

import os
import signal
import typing

from reconciler.helper import machine as m
from reconciler.helper.log import log

CRASH_ENV = "PULLNIX_HELPER_CRASH_AT"
PRUNE = "prune"  # retention after a commit: a step of the shell, not of the machine
# Every name the operator's worker passes to `crash_point`: each state (as entered, or as
# the end of an operation), each effect's step (`Proceed` acts on nothing, so it has
# none), and the shell's own steps.
CRASH_POINTS: tuple[str, ...] = (
    *(str(state) for state in m.State),
    *(effect.step for effect in typing.get_args(m.Effect) if effect is not m.Proceed),
    PRUNE,
)


def crash_point(name: str) -> None:
    """The fault-injection test hook (see the module docstring)."""
    if os.environ.get(CRASH_ENV) == name:
        log.warning("%s=%s: killing myself (test hook)", CRASH_ENV, name)
        os.kill(os.getpid(), signal.SIGKILL)
