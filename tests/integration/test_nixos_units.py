"""The units the NixOS module defines, evaluated by real Nix without nixpkgs: the helper's
unit is the same whatever agent package a generation carries and activation leaves it
alone; the agent's is a sandboxed notify service that activation restarts."""

from __future__ import annotations

import json
import tomllib

import pytest

from tests.support.nixmodule import (
    AGENT_A,
    AGENT_B,
    CONFIG_A,
    CONFIG_B,
    HELPER_A,
    HELPER_B,
    NIX_PKG,
    option_values,
    render,
    units,
)

pytestmark = pytest.mark.nix


def test_helper_unit_is_identical_for_two_agent_packages() -> None:
    one = units(agent=AGENT_A, helper=HELPER_A, config=CONFIG_A)
    two = units(
        agent=AGENT_B,
        helper=HELPER_B,
        config=CONFIG_B,
        otlp={"endpoint": "http://x:4317", "protocol": "grpc", "serviceName": "s"},
    )
    assert one["helper"] == two["helper"]
    assert "/nix/store" not in json.dumps(one["helper"])
    # ...while the units that may change do change, so the fakes were really used.
    assert one["agent"] != two["agent"]
    assert AGENT_B in two["agent"]["serviceConfig"]["ExecStart"]
    assert HELPER_B in two["helperInstall"]["serviceConfig"]["ExecStart"]


def test_helper_unit_starts_the_profile_and_activation_leaves_it_alone() -> None:
    helper = units()["helper"]
    rendered = tomllib.loads(
        render(option_values(host="h", repository={"urls": ["https://x/y.git"]}))
    )
    assert helper["serviceConfig"]["ExecStart"] == (
        f"{rendered['helper']['profile']}/bin/pullnix-helper --config /etc/pullnix/agent.toml"
    )
    assert helper["restartIfChanged"] is False
    assert helper["stopIfChanged"] is False
    assert helper["unitConfig"]["X-StopOnRemoval"] is False
    assert helper["serviceConfig"]["Restart"] == "always"
    assert "script" not in helper
    assert "path" not in helper
    # NixOS's store-path PATH and LOCALE_ARCHIVE are replaced or removed.
    assert helper["environment"]["LOCALE_ARCHIVE"] is None
    assert not helper["environment"]["PATH"].startswith("/nix/store")


def test_helper_profile_is_installed_only_when_absent() -> None:
    install = units(helper=HELPER_A)["helperInstall"]
    assert install["unitConfig"]["ConditionPathExists"] == "!/nix/var/nix/profiles/pullnix/helper"
    assert install["serviceConfig"]["ExecStart"] == (
        f"{NIX_PKG}/bin/nix-env --profile /nix/var/nix/profiles/pullnix/helper --set {HELPER_A}"
    )
    assert install["before"] == ["pullnix-helper.service"]
    assert "d /nix/var/nix/profiles/pullnix 0755 root root - -" in units()["tmpfiles"]


def test_helper_socket_directory_gives_sockets_the_agents_group() -> None:
    # The helper makes its socket 0660 as root; setgid on the directory lets the agent in.
    assert "d /run/pullnix 2750 root pullnix - -" in units()["tmpfiles"]


def test_helper_state_dir_is_readable_by_the_agents_group_only() -> None:
    # The agent watches the journal and reads the committed generations; root alone writes.
    rendered = tomllib.loads(render(option_values(host="edge-01")))
    rule = f"d {rendered['helper']['state_dir']} 2750 root pullnix - -"
    assert rule in units()["tmpfiles"]


def test_agent_unit_is_a_sandboxed_notify_service_restarted_by_activation() -> None:
    agent = units(
        otlp={
            "endpoint": "http://jaeger:4318",
            "protocol": "http/protobuf",
            "serviceName": "edge-01",
        }
    )["agent"]
    service = agent["serviceConfig"]
    assert service["Type"] == "notify"
    assert service["WatchdogSec"]
    assert service["Restart"] == "always"
    assert service["User"] == "pullnix"
    assert service["ProtectSystem"] == "strict"
    assert service["NoNewPrivileges"] is True
    assert service["CapabilityBoundingSet"] == ""
    assert service["StateDirectory"] == "pullnix"
    assert agent["restartIfChanged"] is True
    assert agent["restartTriggers"] == [CONFIG_A]
    assert "network-online.target" in agent["after"]
    assert "network-online.target" in agent["wants"]
    assert agent["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4318"
    assert agent["environment"]["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"
    assert agent["environment"]["OTEL_SERVICE_NAME"] == "edge-01"


def test_agent_without_otlp_endpoint_gets_no_exporter_variables() -> None:
    environment = units()["agent"]["environment"]
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in environment
    assert "OTEL_EXPORTER_OTLP_PROTOCOL" not in environment


def test_state_dir_outside_var_lib_is_created_and_opened_explicitly() -> None:
    result = units(state_dir="/srv/pullnix")
    service = result["agent"]["serviceConfig"]
    assert "StateDirectory" not in service
    assert service["ReadWritePaths"] == ["/srv/pullnix"]
    assert "d /srv/pullnix 0750 pullnix pullnix - -" in result["tmpfiles"]
    assert result["agent"]["environment"]["HOME"] == "/srv/pullnix"
