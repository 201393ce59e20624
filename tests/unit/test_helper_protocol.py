"""The helper's wire protocol as tables: what parses, what is refused and with which code."""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.common import protocol as p

STORE = "/nix/store/" + "a" * 32 + "-nixos-system-edge-01-2"


def test_apply_defaults_and_round_trip() -> None:
    req = p.parse_request({"v": 1, "op": "apply", "storePath": STORE})
    assert isinstance(req, p.ApplyRequest)
    assert (req.action, req.trial, req.require_confirm, req.confirm_timeout) == (
        "switch",
        True,
        False,
        120.0,
    )
    assert p.apply_from_wire(p.apply_to_wire(req)) == req


def test_checks_parse_to_values_and_back() -> None:
    wire = [
        {"name": "git", "gitRemote": {}},
        {
            "name": "api",
            "timeout": 2,
            "retries": 3,
            "interval": 0.2,
            "http": {
                "url": "http://127.0.0.1:8080/healthz",
                "expectStatus": 204,
                "bodyRegex": "ok",
            },
        },
        {"name": "port", "tcp": {"host": "127.0.0.1", "port": 22}},
        {"name": "units", "systemd": {"units": ["sshd.service"]}},
        {"name": "custom", "command": {"argv": ["true"]}},
    ]
    req = p.parse_request({"v": 1, "op": "apply", "storePath": STORE, "healthChecks": wire})
    assert isinstance(req, p.ApplyRequest)
    assert [c.kind for c in req.health_checks] == list(p.CHECK_KINDS)
    api = req.health_checks[1]
    assert (api.timeout, api.retries, api.interval, api.param("expectStatus")) == (2.0, 3, 0.2, 204)
    assert p.apply_from_wire(p.apply_to_wire(req)) == req


def apply(**fields: Any) -> dict[str, Any]:
    return {"v": 1, "op": "apply", "storePath": STORE, **fields}


def check(**fields: Any) -> dict[str, Any]:
    return apply(healthChecks=[{"name": "c", **fields}])


REFUSED = {
    "no version": ({"op": "ping"}, p.ErrorCode.BAD_VERSION),
    "string version": ({"v": "1", "op": "ping"}, p.ErrorCode.BAD_VERSION),
    "no op": ({"v": 1}, p.ErrorCode.UNKNOWN_OP),
    "unknown op": ({"v": 1, "op": "shell"}, p.ErrorCode.UNKNOWN_OP),
    "unknown field": (apply(force=True), p.ErrorCode.UNKNOWN_FIELD),
    "trial as string": (apply(trial="true"), p.ErrorCode.BAD_FIELD),
    "revision as number": (apply(revision=1), p.ErrorCode.BAD_FIELD),
    "negative timeout": (apply(confirmTimeout=-1), p.ErrorCode.BAD_FIELD),
    "boolean timeout": (apply(confirmTimeout=True), p.ErrorCode.BAD_FIELD),
    "checks not a list": (apply(healthChecks={}), p.ErrorCode.BAD_FIELD),
    "check without kind": (check(), p.ErrorCode.BAD_FIELD),
    "check without name": (apply(healthChecks=[{"gitRemote": {}}]), p.ErrorCode.BAD_FIELD),
    "retries as bool": (check(retries=True, gitRemote={}), p.ErrorCode.BAD_FIELD),
    "negative retries": (check(retries=-1, gitRemote={}), p.ErrorCode.BAD_FIELD),
    "http not http": (check(http={"url": "file:///etc/passwd"}), p.ErrorCode.BAD_FIELD),
    "bad regex": (check(http={"url": "http://x/", "bodyRegex": "("}), p.ErrorCode.BAD_FIELD),
    "port out of range": (check(tcp={"host": "h", "port": 70000}), p.ErrorCode.BAD_FIELD),
    "argv a string": (check(command={"argv": "true"}), p.ErrorCode.BAD_FIELD),
    "empty units": (check(systemd={"units": []}), p.ErrorCode.BAD_FIELD),
    "gitRemote with fields": (check(gitRemote={"url": "x"}), p.ErrorCode.UNKNOWN_FIELD),
    "relative path": (apply(storePath="nix/store/x"), p.ErrorCode.BAD_STORE_PATH),
    "store dir itself": (apply(storePath="/nix/store"), p.ErrorCode.BAD_STORE_PATH),
    "dot-dot": (apply(storePath="/nix/store/../etc"), p.ErrorCode.BAD_STORE_PATH),
    "below a path": (apply(storePath=STORE + "/bin"), p.ErrorCode.BAD_STORE_PATH),
    "no hash": (apply(storePath="/nix/store/system"), p.ErrorCode.BAD_STORE_PATH),
    "lookalike prefix": (
        apply(storePath="/nix/storex/" + "a" * 32 + "-x"),
        p.ErrorCode.BAD_STORE_PATH,
    ),
    "confirm nothing": ({"v": 1, "op": "confirm"}, p.ErrorCode.BAD_FIELD),
    "upgrade without path": ({"v": 1, "op": "upgrade"}, p.ErrorCode.BAD_FIELD),
}


@pytest.mark.parametrize(("message", "code"), REFUSED.values(), ids=list(REFUSED))
def test_refused_with_a_code(message: dict[str, Any], code: p.ErrorCode) -> None:
    with pytest.raises(p.ProtocolError) as refused:
        p.parse_request(message)
    assert refused.value.code == code
    assert refused.value.message


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"{", p.ErrorCode.BAD_JSON),
        (b"\xff\xfe", p.ErrorCode.BAD_JSON),
        (b"3", p.ErrorCode.BAD_JSON),
        (b" " * (p.MAX_MESSAGE + 1), p.ErrorCode.TOO_LARGE),
    ],
)
def test_framing_errors(raw: bytes, code: p.ErrorCode) -> None:
    with pytest.raises(p.ProtocolError) as refused:
        p.decode_line(raw)
    assert refused.value.code == code


def test_answers_carry_the_version() -> None:
    assert p.encode({"ok": True}) == b'{"v":1,"ok":true}\n'
