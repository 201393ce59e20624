"""What the schema lets through must be something the agent and helper can act on.

- every duration has a range (crds/: an `x-kubernetes-validations` CEL rule), and `pullnix validate`
  names the field and the range; a 400-digit interval, a century-long check
  interval and a 0s confirmTimeout are refused before they reach a clock;
- the helper refuses requests beyond its own ranges, which hold the spec's;
- `spec.revision` accepts what `git check-ref-format` accepts for a tag (checked
  against the real git), so a pin can never become a refspec libgit2 refuses;
- the agent's local API refuses NaN, infinities and huge numbers as clearly as
  the spec does.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from reconciler.api import SpecError, load_spec_text
from reconciler.api.schema import VALIDATIONS, crd, duration_range
from reconciler.common import checks
from reconciler.common import protocol as p
from reconciler.common.config import ConfigError, parse_machine_config
from reconciler.common.durations import parse_duration
from reconciler.common.wire import ProtocolError
from reconciler.controller.localapi import parse_request

HEAD = (
    "apiVersion: pullnix.dev/v1alpha1\nkind: NixOSDeployment\nmetadata:\n  name: fleet\n"
    'spec:\n  configuration:\n    flake: "nixosConfigurations.{host}"\n'
)
CHECK = "  healthChecks:\n    - name: api\n      tcp: {host: 127.0.0.1, port: 22}\n"


def issues(body: str) -> list[str]:
    with pytest.raises(SpecError) as caught:
        load_spec_text((HEAD + body).encode(), "pullnix.yaml")
    assert caught.value.reason == "InvalidSpec"
    return [f"{i.path}: {i.message}" for i in caught.value.issues]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            f"  interval: 1{'0' * 400}h\n",
            "spec.interval: is longer than 32 characters",
        ),
        (
            "  rollback: {confirmTimeout: 99999999999h}\n",
            "spec.rollback.confirmTimeout: 99999999999h is out of range; "
            "use a duration from 1s to 24h",
        ),
        (
            "  rollback: {confirmTimeout: 0s}\n",
            "spec.rollback.confirmTimeout: 0s is out of range; use a duration from 1s to 24h",
        ),
        (
            CHECK + "      interval: 999999h\n",
            "spec.healthChecks[0].interval: 999999h is out of range; use a duration from 0s to 1h",
        ),
        (
            CHECK + "      timeout: 0s\n",
            "spec.healthChecks[0].timeout: 0s is out of range; use a duration from 100ms to 1h",
        ),
        (
            "  interval: 0s\n",
            "spec.interval: 0s is out of range; use a duration from 1s to 24h",
        ),
        (
            '  hosts:\n    "edge-*":\n      interval: 48h\n',
            'spec.hosts["edge-*"].interval: 48h is out of range; use a duration from 1s to 24h',
        ),
    ],
)
def test_a_duration_out_of_range_names_the_field_and_the_range(body: str, expected: str) -> None:
    assert expected in issues(body)


def test_durations_at_the_ends_of_their_ranges_are_valid() -> None:
    spec = load_spec_text(
        (
            HEAD
            + "  interval: 24h\n  rollback: {confirmTimeout: 1s}\n"
            + CHECK
            + "      timeout: 1h\n      interval: 0s\n"
        ).encode(),
        "pullnix.yaml",
    ).spec
    assert (spec.interval, spec.rollback.confirm_timeout) == (86400.0, 1.0)


def _highs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [duration_range(r["rule"])[1] for r in node.get(VALIDATIONS, [])]
        return found + [h for v in node.values() for h in _highs(v)]
    if isinstance(node, list):
        return [h for v in node for h in _highs(v)]
    return []


def test_every_duration_in_the_crd_has_a_range_the_helper_accepts() -> None:
    def walk(node: Any) -> list[dict[str, Any]]:
        if isinstance(node, dict):
            here = [node] if node.get("pattern", "").endswith("(ms|s|m|h))+$") else []
            return here + [n for v in node.values() for n in walk(v)]
        if isinstance(node, list):
            return [n for v in node for n in walk(v)]
        return []

    durations = walk(crd())
    assert durations
    assert all(VALIDATIONS in d and "maxLength" in d for d in durations)
    helper_max = max(p.MAX_CONFIRM_TIMEOUT, checks.MAX_CHECK_TIMEOUT, checks.MAX_CHECK_INTERVAL)
    highs = _highs(crd())  # every rule is one pullnix evaluates (duration_range raises else)
    assert highs
    assert all(parse_duration(h) <= helper_max for h in highs)


def test_parse_duration_refuses_what_would_overflow_a_clock() -> None:
    for text in (f"1{'0' * 400}h", "1" * 30 + "h", "99999999999h"):
        with pytest.raises(ValueError, match=r"duration|longer"):
            parse_duration(text)


@pytest.mark.parametrize(
    "field",
    [
        {"confirmTimeout": float("nan")},
        {"confirmTimeout": 10**400},
        {"confirmTimeout": 99999999999 * 3600.0},
        {"activationTimeout": -1},
        {"healthChecks": [{"name": "c", "tcp": {"host": "h", "port": 1}, "interval": 1e12}]},
        {"healthChecks": [{"name": "c", "tcp": {"host": "h", "port": 1}, "timeout": 1e12}]},
        {"healthChecks": [{"name": "c", "tcp": {"host": "h", "port": 1}, "retries": 10**9}]},
    ],
)
def test_the_helper_refuses_durations_beyond_its_ranges(field: dict[str, Any]) -> None:
    with pytest.raises(ProtocolError) as caught:
        p.parse_apply({"storePath": "/nix/store/" + "a" * 32 + "-system", **field})
    assert caught.value.code == "bad-field"


PINS = [
    "",
    "v1.2.0",
    "release/2024-01",
    "3f2a1c9e",
    "a" * 40,
    "-dash",
    "a+b",
    "../heads/main",
    "a..b",
    "v1.lock",
    "v1.lock/x",
    "x/",
    "/x",
    "x.",
    ".hidden",
    "a/.hidden",
    "a//b",
    "heads/../../x",
]


@pytest.mark.parametrize("pin", PINS)
def test_the_revision_pattern_accepts_exactly_what_git_accepts(pin: str) -> None:
    git_ok = (
        pin == ""
        or subprocess.run(["git", "check-ref-format", f"refs/tags/{pin}"], check=False).returncode
        == 0
    )
    text = (HEAD + f'  revision: "{pin}"\n').encode()
    if git_ok:
        assert load_spec_text(text, "pullnix.yaml").spec.revision == pin
    else:
        with pytest.raises(SpecError, match="git check-ref-format"):
            load_spec_text(text, "pullnix.yaml")


@pytest.mark.parametrize(
    "raw",
    [
        b'{"v":1,"op":"reconcile","wait":true,"timeout":NaN}',
        b'{"v":1,"op":"reconcile","wait":true,"timeout":Infinity}',
        b'{"v":1,"op":"rollback","wait":true,"timeout":-1}',
        b'{"v":1,"op":"reconcile","wait":true,"timeout":1' + b"0" * 400 + b"}",
        b'{"v":1,"op":"reconcile","wait":true,"timeout":1e400}',
    ],
)
def test_the_agent_api_refuses_numbers_it_cannot_wait_for(raw: bytes) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_request(raw)
    assert caught.value.code in ("bad-field", "bad-json")


def test_the_agent_api_takes_a_sane_timeout() -> None:
    assert parse_request(json.dumps({"v": 1, "op": "reconcile", "timeout": 30}).encode()) == (
        "reconcile",
        {"timeout": 30},
    )


@pytest.mark.parametrize("interval", [f"1{'0' * 400}h", "9999999h"])
def test_a_machine_config_duration_past_a_week_is_refused(interval: str) -> None:
    with pytest.raises(ConfigError, match=r"triggers\.interval"):
        parse_machine_config({"triggers": {"interval": interval}})
