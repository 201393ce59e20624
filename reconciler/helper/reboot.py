"""Reboots the helper carries out, journaled as operations of their own (kind `reboot`).

The agent asks (`reboot.policy: ifNeeded`, inside `reboot.window`, when the committed
generation's kernel, initrd or modules are not the booted ones); the helper:

1. refuses while an operation runs (the operator answers busy first);
2. writes `reboot.json` in its state dir: the operation (as `journal.to_json` writes
   it), the boot id it was asked in, and the system expected to come up;
3. runs `systemctl reboot --check-inhibitors=yes`: logind's shutdown inhibitors
   (`systemd-inhibit --what=shutdown`) are honoured as an interactive `systemctl
   reboot` honours them, never forced past; a refusal removes the record and is
   answered `busy`, naming the inhibitor;
4. after the boot (`settle`, at the next start of the helper), archives the operation
   beside the others: Succeeded when /run/booted-system is the expected system, Failed
   naming what came up instead. A record of the same boot older than `GIVE_UP` seconds
   is archived as Failed: the machine never went down.

Must not: decide whether a reboot is due (that is the agent's `decide`).
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

from reconciler.common.answers import operation_from_json as from_json
from reconciler.common.answers import operation_to_json as to_json
from reconciler.common.atomic import write_json_atomic
from reconciler.common.config import MachineConfig
from reconciler.common.protocol import ApplyRequest, ErrorCode, ProtocolError, RebootRequest
from reconciler.helper import machine as m
from reconciler.helper import system, transient
from reconciler.helper.journal import FILE_MODE, Journal
from reconciler.helper.log import log

RECORD = "reboot.json"
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
GIVE_UP = 600.0


def boot_id() -> str:
    try:
        return BOOT_ID.read_text().strip()
    except OSError:
        return ""


def pending(config: MachineConfig) -> dict[str, Any] | None:
    """The reboot asked for and not yet settled, if any."""
    try:
        value: dict[str, Any] = json.loads((config.helper.state_dir / RECORD).read_text())
        return value
    except (OSError, ValueError, RecursionError):  # RecursionError: `[[[[…`
        return None


def reboot(config: MachineConfig, request: RebootRequest, op_id: str, now: float) -> dict[str, Any]:
    """Steps 2 and 3; the caller holds the operator idle."""
    real = system.check_store_path(request.store_path, "bin/switch-to-configuration")
    if not transient.available():
        raise ProtocolError(
            ErrorCode.NOTHING_TO_DO, "systemd is not PID 1 here: the helper reboots nothing"
        )
    profile = system.profile_state(config.system.profile)
    previous = m.Previous(
        system.resolve(config.system.current_system), profile.path, profile.generation
    )
    apply = ApplyRequest(
        store_path=real,
        revision=request.revision,
        action="boot",
        trial=False,
        traceparent=request.traceparent,
    )
    op = m.begin(op_id, "reboot", apply, previous, now)
    record = config.helper.state_dir / RECORD
    write_json_atomic(
        record,
        {"operation": to_json(op), "bootId": boot_id(), "askedAt": now},
        mode=FILE_MODE,
    )
    log.warning("operation %s: rebooting, expecting %s to come up", op_id, real)
    done = subprocess.run(
        ["systemctl", "reboot", "--check-inhibitors=yes", "--no-ask-password"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        record.unlink(missing_ok=True)
        why = (done.stderr or done.stdout).strip() or f"exit {done.returncode}"
        log.warning("operation %s: no reboot: %s", op_id, why)
        raise ProtocolError(ErrorCode.BUSY, f"systemctl reboot refused: {why}")
    return {"ok": True, "operationId": op_id, "state": "Rebooting"}


def settle(config: MachineConfig, journal: Journal, now: float) -> None:
    """Step 4: archive a reboot asked for before this start, once it has happened."""
    record = pending(config)
    if record is None:
        return
    try:
        op = from_json(record["operation"])
    except (KeyError, TypeError, ValueError, AttributeError, ProtocolError) as exc:
        log.error("%s is unreadable (%r); removing it", RECORD, exc)
        (config.helper.state_dir / RECORD).unlink(missing_ok=True)
        return
    expected = op.request.store_path
    if record.get("bootId") == boot_id():
        if now - float(record.get("askedAt", now)) < GIVE_UP:
            return  # restarted while the machine goes down
        finished = _end(op, m.State.FAILED, now, "the machine did not reboot")
    else:
        link = config.system.booted_system
        booted = os.path.realpath(link) if os.path.lexists(link) else None
        if booted == expected:
            finished = _end(op, m.State.SUCCEEDED, now, f"rebooted into {expected}")
        else:
            finished = _end(
                op,
                m.State.FAILED,
                now,
                f"rebooted, but {booted or 'nothing'} came up instead of {expected}",
            )
    write_json_atomic(journal.archive / f"{op.id}.json", to_json(finished), mode=FILE_MODE)
    (config.helper.state_dir / RECORD).unlink(missing_ok=True)
    log_at = log.info if finished.state is m.State.SUCCEEDED else log.error
    log_at("operation %s: %s: %s", op.id, finished.state, finished.message)


def _end(op: m.Operation, state: m.State, now: float, message: str) -> m.Operation:
    at = m.iso(now)
    return replace(
        op,
        state=state,
        message=message,
        finished_at=at,
        transitions=(*op.transitions, m.Transition(state, at, message)),
    )


def is_rebooting(config: MachineConfig) -> bool:
    """Whether a reboot of this boot is under way (applies are refused meanwhile)."""
    record = pending(config)
    return record is not None and record.get("bootId") == boot_id() and os.path.exists(BOOT_ID)
