"""Activation in a transient systemd unit of its own, the one nixos-rebuild uses.

Under systemd (PID 1, `/run/systemd/system` present) `switch-to-configuration` runs as

    systemd-run --unit=nixos-rebuild-switch-to-configuration --service-type=exec
        --collect --property=RemainAfterExit=yes --description="pullnix <op> ..." ...

so its cgroup is not the helper's: a helper crash, restart or upgrade never kills a
half-done switch, and because the unit name is nixos-rebuild's, a hand-run
`nixos-rebuild switch` and pullnix cannot activate at the same time (systemd refuses
the second start). Its output is appended to the operation's activation log; systemd's
`append:` has no bound of its own, so while the helper waits it frees the disk under the
log's middle at every poll (`punch_log`), and cuts the log to LOG_LIMIT once the unit
has ended.

How the result survives the helper: `RemainAfterExit=yes` keeps a successful unit
`active (exited)` until the helper has read it and stopped it; a failed one is collected
at once (`--collect`), so "gone" means failed, or never started: both are rolled back.
The description names the operation and the step, so a restarted helper recognises its
own unit, waits for it, and takes its result instead of deciding blind (`leftover`).

Outside systemd (tests, the demo, containers without it) `system.run` stays.
Must not: decide what a result means for the operation (that is `machine.py`); it only
turns the unit's end into the event the machine takes (`event_after_restart`).
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from reconciler.common.output import LOG_LIMIT, cut_log, punch_log
from reconciler.helper import machine as m
from reconciler.helper.log import log as helper_log

UNIT = "nixos-rebuild-switch-to-configuration"
SERVICE = f"{UNIT}.service"
POLL = 0.25
_PROPERTIES = ("LoadState", "ActiveState", "SubState", "Result", "Description", "InvocationID")
_RUNNING = ("activating", "active", "deactivating", "reloading")


class ActivationFailed(Exception):
    """The unit failed, could not start, collided, or ran out of time; the message says."""


class Collision(ActivationFailed):
    """Another activation (a hand-run nixos-rebuild) holds the unit name."""


def available(systemd_dir: Path = Path("/run/systemd/system")) -> bool:
    """sd_booted(3): systemd is PID 1 here."""
    return systemd_dir.is_dir()


@dataclass(frozen=True)
class UnitState:
    load: str
    active: str
    sub: str
    result: str
    description: str
    invocation: str

    @property
    def gone(self) -> bool:
        return self.load == "not-found" or (self.active in ("inactive", "failed"))

    @property
    def running(self) -> bool:
        return self.load != "not-found" and self.active in _RUNNING and self.sub != "exited"

    @property
    def succeeded(self) -> bool:
        return self.active == "active" and self.sub == "exited" and self.result == "success"


def parse_show(text: str) -> UnitState:
    """`systemctl show -p A -p B ...` output (KEY=VALUE lines) as a UnitState."""
    values = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    return UnitState(*(values.get(key, "") for key in _PROPERTIES))


def description(owner: str, store_path: str, action: str) -> str:
    """The unit's description: whose, and which step, so a restart can tell it is ours."""
    return f"pullnix {owner}: {store_path}/bin/switch-to-configuration {action}"


def show() -> UnitState:
    argv = ["systemctl", "show", SERVICE, *(f"--property={p}" for p in _PROPERTIES)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        raise ActivationFailed(f"systemctl show {SERVICE}: {done.stderr.strip()}")
    return parse_show(done.stdout)


def foreign_activation() -> str | None:
    """Why an apply must wait: the unit is held by an activation that is not pullnix's
    (a hand-run nixos-rebuild); None when it is free or ours."""
    try:
        state = show()
    except ActivationFailed:
        return None
    if state.gone or state.description.startswith("pullnix "):
        return None
    return (
        f"{SERVICE} is {state.active}: another activation ({state.description or 'unnamed'}),"
        " such as a hand-run nixos-rebuild, is under way; try again when it is over"
    )


def switch(store_path: str, action: str, log: Path, timeout: float, owner: str) -> None:
    """Run `STORE/bin/switch-to-configuration ACTION` in the unit and wait for its result.

    A unit of ours for this same step, left by a helper that died, is waited for instead
    of starting another; one held by anyone else is a `Collision`."""
    mine = description(owner, store_path, action)
    state = show()
    if state.description == mine and not state.gone:
        _note(log, f"[resuming the wait for {SERVICE} (invocation {state.invocation})]\n")
    elif state.description.startswith("pullnix ") and state.sub == "exited":
        _stop()  # an earlier step's unit whose result was read but not yet stopped
        _start(store_path, action, log, mine)
    elif state.running or (state.active == "active" and state.sub == "exited"):
        raise Collision(
            f"{SERVICE} is already {state.active} ({state.description or 'no description'}): "
            "another activation, such as a hand-run nixos-rebuild, holds it; pullnix "
            "started nothing"
        )
    else:
        _start(store_path, action, log, mine)
    _wait(log, mine, timeout)


def leftover(owner: str, store_path: str, action: str, log: Path, timeout: float) -> bool | None:
    """After a restart in the middle of this step: True if our unit is there and ends
    (or ended) well, False if it ends badly, None if there is none (failed and collected,
    or never started: the caller cannot tell, and rolls back)."""
    mine = description(owner, store_path, action)
    state = show()
    if state.description != mine or state.gone:
        return None
    _note(log, f"[the helper restarted; waiting for {SERVICE} (invocation {state.invocation})]\n")
    try:
        _wait(log, mine, timeout)
    except ActivationFailed:
        return False
    finally:
        cut_log(log, LOG_LIMIT)  # as system.switch does after a wait it started itself
    return True


def _start(store_path: str, action: str, log: Path, mine: str) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    argv = [
        "systemd-run",
        f"--unit={UNIT}",
        "--service-type=exec",
        "--collect",
        "--quiet",
        f"--description={mine}",
        "--property=RemainAfterExit=yes",
        f"--property=StandardOutput=append:{log}",
        f"--property=StandardError=append:{log}",
        "--",
        f"{store_path}/bin/switch-to-configuration",
        action,
    ]
    _note(log, f"$ {' '.join(argv)}\n")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        message = done.stderr.strip()
        if "already" in message or "exists" in message:
            raise Collision(f"systemd refused {SERVICE}: {message}; pullnix started nothing")
        raise ActivationFailed(f"systemd-run {SERVICE}: {message or f'exit {done.returncode}'}")
    _note(log, f"[started as {SERVICE} (invocation {show().invocation})]\n")


def _wait(log: Path, mine: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        punch_log(log, LOG_LIMIT)
        state = show()
        if state.description != mine or state.gone:
            _note(log, f"[{SERVICE} failed]\n")
            raise ActivationFailed(f"switch-to-configuration failed in {SERVICE}: {_tail(log)}")
        if state.succeeded:
            _stop()
            _note(log, f"[{SERVICE} succeeded]\n")
            return
        if time.monotonic() > deadline:
            _stop()
            raise ActivationFailed(f"{SERVICE} still running after {timeout:g}s; stopped")
        time.sleep(POLL)


def _stop() -> None:
    subprocess.run(["systemctl", "stop", SERVICE], capture_output=True, timeout=120, check=False)


def _note(log: Path, text: str) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a", encoding="utf-8") as sink:
        sink.write(text)


def _tail(log: Path, lines: int = 3) -> str:
    try:
        with open(log, "rb") as source:
            source.seek(max(0, os.path.getsize(log) - 4096))
            text = source.read().decode(errors="replace")
    except OSError:
        return "see the activation log"
    last = [line for line in text.splitlines() if line and not line.startswith("[")][-lines:]
    return " / ".join(last) or "no output"


def may_outlive(op: m.Operation) -> bool:
    """Whether a journaled operation's activation may still run in its unit."""
    return op.state is m.State.ACTIVATING and available()


def event_after_restart(op: m.Operation, logfile: Path) -> m.Event:
    """What a restarted helper feeds the machine for a journaled operation: under systemd,
    an activation that outlived the old helper is waited for and its result taken (it
    finished well: on to verification, exactly as if the helper had never died);
    otherwise `Restarted` (roll back)."""
    effect = m.next_effect(op)
    if op.state is not m.State.ACTIVATING or not isinstance(effect, m.Activate):
        return m.Restarted()
    if not available():
        return m.Restarted()
    timeout = op.request.activation_timeout
    try:
        ended = leftover(op.id, effect.store_path, effect.action, logfile, timeout)
    except ActivationFailed as exc:
        helper_log.error("operation %s: cannot read the activation's unit: %s", op.id, exc)
        return m.Restarted()
    if ended is None:
        return m.Restarted()
    helper_log.warning(
        "operation %s: the activation outlived the old helper and %s",
        op.id,
        "succeeded; verifying" if ended else "failed",
    )
    return m.Done() if ended else m.Broke(f"activation failed in {SERVICE}")
