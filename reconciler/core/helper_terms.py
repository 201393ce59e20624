"""The helper's terms in the agent's: health checks to send, the operation under way.

Owns the two translations between the desired state (`core.model`) and the
helper's protocol (`reconciler.common`): a spec health check becomes the
`CheckSpec` the helper runs, and the helper's operation in progress becomes
the `HelperView` that `decide` reads. Pure: values in, values out.
"""

from __future__ import annotations

from typing import Any

from reconciler.common.checks import CheckSpec
from reconciler.common.checks import check_spec as check_spec_of
from reconciler.common.operation import Operation, State
from reconciler.core.decide import HelperView
from reconciler.core.model import Command, HealthCheck, HttpCheck, SystemdCheck, TcpCheck


def check_spec(check: HealthCheck) -> CheckSpec:
    """A spec health check as the helper runs it (durations in seconds)."""
    kind = check.kind
    target: dict[str, Any]
    match kind:
        case HttpCheck():
            name, target = "http", {"url": kind.url, "expectStatus": kind.expect_status}
            if kind.body_regex is not None:
                target["bodyRegex"] = kind.body_regex
        case TcpCheck():
            name, target = "tcp", {"host": kind.host, "port": kind.port}
        case SystemdCheck():
            name, target = "systemd", {"units": kind.units}
        case Command():
            name, target = "command", {"argv": kind.argv}
        case _:
            name, target = "gitRemote", {}
    return check_spec_of(
        check.name,
        name,
        target,
        timeout=check.timeout,
        retries=check.retries,
        interval=check.interval,
    )


def apply_request_view(op: Operation) -> HelperView:
    """What `decide` needs to know of the helper's operation in progress."""
    return HelperView(
        busy=True,
        operation_id=op.id,
        state=str(op.state),
        store_path=op.request.store_path,
        revision=op.request.revision or None,
        awaiting_confirm=op.state == State.VERIFYING and op.request.require_confirm,
        confirmed=op.confirmed_at is not None,
    )
