"""What the agent sends is what the helper reads, and what the helper answers is what the
agent reads: every request kind and every health-check kind, through both sides' functions.

The agent writes requests with `protocol.request_to_wire` and frames them with
`wire.encode` (that is all `HelperClient.send` does); the helper reads them with
`wire.decode_line` and `protocol.parse_request` (that is all its server does).
The helper answers `status` with `answers.status_to_wire`; the agent reads it
with `answers.status_from_wire`.
"""

from __future__ import annotations

import json
import typing

import pytest

from reconciler.common import protocol as p
from reconciler.common.answers import (
    HelperStatus,
    operation_from_json,
    operation_to_json,
    status_from_wire,
    status_to_wire,
)
from reconciler.common.checks import CHECK_KINDS, CheckSpec
from reconciler.common.operation import (
    CheckResult,
    Operation,
    Phase,
    Previous,
    State,
    Touched,
    Transition,
)
from reconciler.common.wire import decode_line, encode
from reconciler.core.helper_terms import apply_request_view, check_spec
from reconciler.core.model import (
    Command,
    GitRemoteCheck,
    HealthCheck,
    HttpCheck,
    SystemdCheck,
    TcpCheck,
)

STORE = "/nix/store/" + "a" * 32 + "-nixos-system-edge-01-2"
TRACEPARENT = f"00-{'ab' * 16}-{'cd' * 8}-01"

#: One spec health check of every kind, as the spec loader makes them.
SPEC_CHECKS = {
    "gitRemote": HealthCheck("remote", git_remote=GitRemoteCheck()),
    "http": HealthCheck(
        "api",
        http=HttpCheck("http://127.0.0.1:8080/healthz", 204, "^ok$"),
        timeout=3.0,
        retries=2,
        interval=0.5,
    ),
    "tcp": HealthCheck("ssh", tcp=TcpCheck("127.0.0.1", 22)),
    "systemd": HealthCheck("units", systemd=SystemdCheck(("sshd.service", "nginx.service"))),
    "command": HealthCheck("probe", command=Command(("/run/current-system/sw/bin/true", "-x"))),
}

CHECKS = tuple(check_spec(c) for c in SPEC_CHECKS.values())

REQUESTS: dict[str, p.Request] = {
    "ping": p.PingRequest(),
    "status": p.StatusRequest(),
    "status of one operation": p.StatusRequest(operation_id="op-1"),
    "apply, defaults": p.ApplyRequest(store_path=STORE),
    "apply, every field": p.ApplyRequest(
        store_path=STORE,
        revision="c" * 40,
        action="boot",
        trial=False,
        health_checks=CHECKS,
        confirm_timeout=30.0,
        require_confirm=True,
        traceparent=TRACEPARENT,
        activation_timeout=60.0,
        source_revision="d" * 40,
    ),
    "apply, test": p.ApplyRequest(store_path=STORE, action="test"),
    "confirm by operation": p.ConfirmRequest(operation_id="op-1"),
    "confirm by revision": p.ConfirmRequest(revision="c" * 40),
    "confirm by both": p.ConfirmRequest(revision="c" * 40, operation_id="op-1"),
    "rollback": p.RollbackRequest(),
    "rollback, traced": p.RollbackRequest(traceparent=TRACEPARENT),
    "upgrade": p.UpgradeRequest(store_path=STORE),
    "reboot": p.RebootRequest(store_path=STORE),
    "reboot, traced": p.RebootRequest(store_path=STORE, revision="c" * 40, traceparent=TRACEPARENT),
}


def test_the_table_has_every_request_kind_and_every_check_kind() -> None:
    kinds = {type(r) for r in REQUESTS.values()}
    assert kinds == set(typing.get_args(p.Request))
    assert [c.kind for c in CHECKS] == list(CHECK_KINDS)


@pytest.mark.parametrize("request_", REQUESTS.values(), ids=REQUESTS.keys())
def test_a_request_the_agent_sends_is_the_request_the_helper_reads(request_: p.Request) -> None:
    line = encode(p.request_to_wire(request_))
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    assert p.parse_request(decode_line(line)) == request_


@pytest.mark.parametrize("kind", CHECK_KINDS)
def test_a_spec_check_reaches_the_helper_as_the_check_it_runs(kind: str) -> None:
    sent = p.ApplyRequest(store_path=STORE, health_checks=(check_spec(SPEC_CHECKS[kind]),))
    read = p.parse_request(decode_line(encode(p.request_to_wire(sent))))
    assert isinstance(read, p.ApplyRequest)
    (received,) = read.health_checks
    assert received == sent.health_checks[0]
    assert received.kind == kind
    spec = SPEC_CHECKS[kind]
    assert (received.name, received.timeout, received.retries, received.interval) == (
        spec.name,
        spec.timeout,
        spec.retries,
        spec.interval,
    )


def test_an_http_check_keeps_its_body_regex_and_status() -> None:
    (check,) = (c for c in CHECKS if c.kind == "http")
    assert check.param("bodyRegex") == "^ok$"
    assert check.param("expectStatus") == 204


def operation(state: State, **changes: object) -> Operation:
    request = REQUESTS["apply, every field"]
    assert isinstance(request, p.ApplyRequest)
    fields: dict[str, object] = {
        "id": "op-1",
        "kind": "apply",
        "request": request,
        "previous": Previous("/nix/store/" + "b" * 32 + "-old", "/nix/var/x", 4),
        "state": state,
        "created_at": "2026-11-25T18:31:39.566851Z",
        "touched": Touched(running=True, boot=False, profile=True),
        "done": ("activate",),
        "checks": (CheckResult("api", "http", True, "204", 1, "t0", "t1"),),
        "confirmed_at": None,
        "confirm_deadline": 1.8e9,
        "generation": 5,
        "transitions": (Transition(State.ACTIVATING, "t0", "go"),),
        "phases": (Phase("activate", "t0", "t1", True, ""),),
        "message": "",
        "finished_at": None,
    }
    fields.update(changes)
    return Operation(**fields)


STATUSES = {
    "idle, nothing done": HelperStatus(),
    "busy": HelperStatus(operation=operation(State.VERIFYING)),
    "idle, with history and a queued upgrade": HelperStatus(
        recent=(operation(State.SUCCEEDED, id="op-2"), operation(State.ROLLED_BACK)),
        upgrade_pending=STORE,
    ),
    "one operation asked for": HelperStatus(
        operation=operation(State.COMMITTING, id="op-3"),
        found=operation(State.FAILED, finished_at="t9", message="broken"),
    ),
}


@pytest.mark.parametrize("status", STATUSES.values(), ids=STATUSES.keys())
def test_the_status_the_helper_answers_is_the_status_the_agent_reads(
    status: HelperStatus,
) -> None:
    line = encode(status_to_wire(status))
    answer = decode_line(line)
    assert answer["ok"] is True
    assert answer["busy"] is status.busy
    assert status_from_wire(answer) == status


def test_an_operation_survives_its_json_form() -> None:
    op = operation(State.VERIFYING, confirmed_at="t2")
    assert operation_from_json(json.loads(json.dumps(operation_to_json(op)))) == op


def test_the_operation_under_way_is_what_decide_sees() -> None:
    view = apply_request_view(operation(State.VERIFYING))
    assert (view.busy, view.operation_id, view.state, view.store_path) == (
        True,
        "op-1",
        "Verifying",
        STORE,
    )
    assert view.revision == "c" * 40
    assert view.awaiting_confirm
    assert not view.confirmed


def test_check_spec_values_are_hashable_values() -> None:
    assert len({*CHECKS, *CHECKS}) == len(CHECKS)
    assert all(isinstance(c, CheckSpec) for c in CHECKS)


def test_an_operation_read_again_is_the_same_and_one_under_way_is_read_anew() -> None:
    running = operation(State.VERIFYING, id="op-7")
    done = operation(State.SUCCEEDED, id="op-7", finished_at="t9")
    assert operation_from_json(operation_to_json(running)) == running
    assert operation_from_json(operation_to_json(done)) == done
    assert operation_from_json(operation_to_json(done)) is operation_from_json(
        operation_to_json(done)
    )
    moved = operation(State.COMMITTING, id="op-7", message="moved on")
    assert operation_from_json(operation_to_json(moved)) == moved


def test_a_finished_operation_whose_message_grows_before_its_archive_is_read_anew() -> None:
    # The helper answers a Succeeded operation from memory while it prunes old generations,
    # then archives it with the retention noted; a client polling both must see the note.
    done = operation(State.SUCCEEDED, id="op-8", finished_at="t9", message="committed")
    pruned = operation(
        State.SUCCEEDED, id="op-8", finished_at="t9", message="committed; deleted old 2"
    )
    assert operation_from_json(operation_to_json(done)) == done
    assert operation_from_json(operation_to_json(pruned)) == pruned
