"""sd_notify: telling systemd the agent is ready, what it is doing, and that it is alive.

Owns the notify protocol (sd_notify(3)): newline-separated `KEY=value`
assignments in one datagram to the AF_UNIX socket named by $NOTIFY_SOCKET (a
path, or `@name` for the abstract namespace), and reading the watchdog
interval from $WATCHDOG_USEC / $WATCHDOG_PID. Not under systemd (no
$NOTIFY_SOCKET) every call does nothing.

Must not: raise. A notification that cannot be sent is logged at debug level
and forgotten; it must never stop a reconcile.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger("pullnix.telemetry")


#: How long one notification may wait for room in the receiver's queue.
SEND_TIMEOUT = 0.25


def notify(*assignments: str) -> bool:
    """Send `KEY=value` lines in one datagram; True if it was sent."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    elif not address.startswith("/"):
        log.debug("NOTIFY_SOCKET=%r: only AF_UNIX sockets are supported", address)
        return False
    payload = "\n".join(assignments).encode("utf-8", "replace")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            # A receiver that does not read fills its queue (net.unix.max_dgram_qlen, 10 by
            # default) and then blocks senders: never let that stall a pass or the watchdog.
            sock.settimeout(SEND_TIMEOUT)
            sock.connect(address)
            sock.sendall(payload)
    except OSError as exc:  # TimeoutError included: the datagram is dropped
        log.debug("sd_notify to %r failed: %s", address, exc)
        return False
    return True


def notify_ready(status: str) -> None:
    notify("READY=1", _status(status))


def notify_status(status: str) -> None:
    notify(_status(status))


def notify_stopping(status: str) -> None:
    notify("STOPPING=1", _status(status))


def notify_watchdog() -> None:
    """WATCHDOG=1, only when systemd watches this process (WATCHDOG_USEC set for us)."""
    if watchdog_interval() is not None:
        notify("WATCHDOG=1")


def watchdog_interval() -> float | None:
    """How often to send WATCHDOG=1, in seconds: half of WATCHDOG_USEC; None if not watched."""
    raw = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not raw.isdigit() or int(raw) == 0:
        return None
    if pid and (not pid.isdigit() or int(pid) != os.getpid()):
        return None
    return int(raw) / 2 / 1_000_000


def _status(text: str) -> str:
    return "STATUS=" + " ".join(text.split())
