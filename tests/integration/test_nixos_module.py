"""The NixOS integration holds without nixpkgs: every .nix file parses, the agent.toml the
module renders (nix/render-config.nix, evaluated by real Nix) is exactly what the agent's
own loader accepts and what each option set means, and the helper's unit is the same
whatever agent package a generation carries."""

from __future__ import annotations

import copy
import dataclasses
import json
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest

from reconciler.api import for_host, load_spec_file
from reconciler.helper import config as machine_config
from reconciler.helper.config import parse_machine_config

pytestmark = pytest.mark.nix

ROOT = Path(__file__).resolve().parents[2]
NIX = ROOT / "nix"

AGENT_A = "/nix/store/00000000000000000000000000000000-pullnix-0.1.0"
AGENT_B = "/nix/store/11111111111111111111111111111111-pullnix-0.2.0"
HELPER_A = "/nix/store/22222222222222222222222222222222-pullnix-helper-0.1.0"
HELPER_B = "/nix/store/33333333333333333333333333333333-pullnix-helper-0.2.0"
NIX_PKG = "/nix/store/44444444444444444444444444444444-nix-2.24.0"
CONFIG_A = "/nix/store/55555555555555555555555555555555-pullnix-agent.toml"
CONFIG_B = "/nix/store/66666666666666666666666666666666-pullnix-agent.toml"


def nix_eval(expr: str, **args: Any) -> Any:
    """Evaluate `expr` (a function of the JSON-encoded `args`) strictly with real Nix."""
    argv = ["nix-instantiate", "--eval", "--strict", "--json", "-E",
            f"{{ args }}: let a = builtins.fromJSON args; in {expr}",
            "--argstr", "args", json.dumps(args)]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise NixEvalError(done.stderr)
    return json.loads(done.stdout)


class NixEvalError(Exception):
    pass


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def option_values(**over: Any) -> dict[str, Any]:
    """`services.pullnix` as the module hands it over: the defaults, then `over`."""
    defaults = nix_eval("import ./nix/defaults.nix")
    return deep_merge(defaults, over)


def render(options: dict[str, Any]) -> str:
    text = nix_eval("import ./nix/render-config.nix a", **options)
    assert isinstance(text, str)
    return text


def units(agent: str = AGENT_A, helper: str = HELPER_A, config: str = CONFIG_A,
          state_dir: str = "/var/lib/pullnix", **extra: Any) -> dict[str, Any]:
    result = nix_eval(
        "import ./nix/units.nix (a // { agentPath = [ a.nixPackage ]; })",
        agentPackage=agent, helperPackage=helper, nixPackage=NIX_PKG, configFile=config,
        stateDir=state_dir, **extra)
    assert isinstance(result, dict)
    return result


# What agent.toml says for the defaults and one URL, written out by hand.
MINIMAL: dict[str, Any] = {
    "host": "edge-01",
    "state_dir": "/var/lib/pullnix",
    "source": {
        "urls": ["ssh://git@git.example.org/fleet.git"],
        "branch": "main",
        "spec_path": "pullnix.yaml",
        "ssh_key_file": "",
        "known_hosts_file": "",
        "token_file": "",
        "allowed_signers_file": "",
        "gpg_keyring": "",
        "allow_downgrade": False,
    },
    "system": {
        "profile": "/nix/var/nix/profiles/system",
        "current_system": "/run/current-system",
        "booted_system": "/run/booted-system",
        "keep_generations": 10,
    },
    "helper": {
        "socket": "/run/pullnix/helper.sock",
        "state_dir": "/nix/var/pullnix/helper",
        "profile": "/nix/var/nix/profiles/pullnix/helper",
        "agent_uids": [0, 399],
    },
    "agent": {"socket": "/run/pullnix/agent/agent.sock"},
    "triggers": {
        "interval": "5m",
        "jitter": "30s",
        "webhook_listen": "",
        "webhook_secret_file": "",
    },
    "telemetry": {"metrics_listen": "", "log_format": "logfmt"},
}


def test_every_nix_file_parses() -> None:
    """Every .nix file git tracks: the package and module, the flakes, the example fleet
    users start from, the fake NixOS system and the system tier's flake."""
    tracked = subprocess.run(["git", "-C", str(ROOT), "ls-files", "*.nix"], capture_output=True,
                             text=True, check=True).stdout.split()
    files = sorted(ROOT / name for name in tracked)
    for name in ("package.nix", "module.nix", "render-config.nix", "units.nix", "revision.nix",
                 "tests/vm.nix"):
        assert NIX / name in files, name
    for name in ("flake.nix", "examples/fleet/flake.nix", "reconciler/demo/fakenixos/flake.nix"):
        assert ROOT / name in files, name
    for path in files:
        done = subprocess.run(["nix-instantiate", "--parse", str(path)],
                              capture_output=True, text=True, check=False)
        assert done.returncode == 0, f"{path.relative_to(ROOT)}: {done.stderr}"


def test_minimal_options_render_every_key_with_its_default() -> None:
    text = render(option_values(host="edge-01",
                                repository={"urls": ["ssh://git@git.example.org/fleet.git"]}))
    parsed = tomllib.loads(text)
    assert parsed == MINIMAL
    config = parse_machine_config(parsed)
    assert config.host == "edge-01"
    assert config.triggers.interval == 300.0
    assert config.source.ssh_key_file is None
    assert config.helper.agent_uids == (0, 399)
    assert text.startswith("# /etc/pullnix/agent.toml")


def test_full_options_reach_their_keys() -> None:
    options = option_values(
        host="edge-02",
        stateDir="/srv/pullnix",
        repository={
            "urls": ["ssh://git@git.example.org/fleet.git", "https://mirror.example.org/fleet.git"],
            "branch": "production",
            "specPath": "deploy/pullnix.yaml",
        },
        auth={
            "sshKeyFile": "/run/secrets/pullnix-deploy-key",
            "knownHostsFile": "/etc/pullnix/known_hosts",
            "tokenFile": "/run/secrets/pullnix-token",
        },
        trust={
            "allowedSignersFile": "/etc/pullnix/allowed_signers",
            "gpgKeyring": "/etc/pullnix/keyring.gpg",
            "allowDowngrade": True,
        },
        interval="1m30s",
        jitter="250ms",
        webhook={"listen": "127.0.0.1:9170", "secretFile": "/run/secrets/pullnix-webhook"},
        metrics={"listen": "127.0.0.1:9171"},
        logFormat="json",
        keepGenerations=3,
        agentUid=1234,
        otlp={"endpoint": "http://jaeger:4318", "protocol": "http/protobuf",
              "serviceName": "edge"},
    )
    expected = deep_merge(MINIMAL, {
        "host": "edge-02",
        "state_dir": "/srv/pullnix",
        "source": {
            "urls": ["ssh://git@git.example.org/fleet.git",
                     "https://mirror.example.org/fleet.git"],
            "branch": "production",
            "spec_path": "deploy/pullnix.yaml",
            "ssh_key_file": "/run/secrets/pullnix-deploy-key",
            "known_hosts_file": "/etc/pullnix/known_hosts",
            "token_file": "/run/secrets/pullnix-token",
            "allowed_signers_file": "/etc/pullnix/allowed_signers",
            "gpg_keyring": "/etc/pullnix/keyring.gpg",
            "allow_downgrade": True,
        },
        "system": {"keep_generations": 3},
        "helper": {"agent_uids": [0, 1234]},
        "triggers": {"interval": "1m30s", "jitter": "250ms",
                     "webhook_listen": "127.0.0.1:9170",
                     "webhook_secret_file": "/run/secrets/pullnix-webhook"},
        "telemetry": {"metrics_listen": "127.0.0.1:9171", "log_format": "json"},
    })
    parsed = tomllib.loads(render(options))
    assert parsed == expected
    config = parse_machine_config(parsed)
    assert config.source.token_file == Path("/run/secrets/pullnix-token")
    assert config.triggers.interval == 90.0
    assert config.triggers.jitter == 0.25
    assert config.telemetry.log_format == "json"


def test_extra_settings_override_and_add_keys_of_agent_toml() -> None:
    options = option_values(
        host="edge-03",
        repository={"urls": ["https://git.example.org/fleet.git"]},
        extraSettings={
            "telemetry": {"log_format": "json"},
            "system": {"current_system": "/run/current-system", "keep_generations": 20},
            "agent": {"socket": "/run/pullnix/agent/api.sock"},
            "host": "edge-03.example.org",
        },
    )
    expected = deep_merge(MINIMAL, {
        "host": "edge-03.example.org",
        "source": {"urls": ["https://git.example.org/fleet.git"]},
        "system": {"keep_generations": 20},
        "agent": {"socket": "/run/pullnix/agent/api.sock"},
        "telemetry": {"log_format": "json"},
    })
    parsed = tomllib.loads(render(options))
    assert parsed == expected
    assert parse_machine_config(parsed).system.keep_generations == 20


@pytest.mark.parametrize(("extra", "named"), [
    ({"source": {"url": ["x"]}}, "extraSettings.source.url"),
    ({"webhook": {"listen": "x"}}, "extraSettings.webhook"),
    ({"triggers": "5m"}, "extraSettings.triggers: must be an attribute set"),
])
def test_extra_settings_with_a_key_agent_toml_lacks_fail_the_build_naming_it(
    extra: dict[str, Any], named: str,
) -> None:
    options = option_values(host="h", repository={"urls": ["https://x/y.git"]},
                            extraSettings=extra)
    with pytest.raises(NixEvalError, match=named.replace(".", r"\.")):
        render(options)


def test_render_writes_every_key_the_loader_knows_and_no_other() -> None:
    text = render(option_values(host="h", repository={"urls": ["https://x/y.git"]}))
    parsed = tomllib.loads(text)
    loader_keys = {"host", "state_dir"} | set(machine_config._SECTIONS)
    assert set(parsed) == loader_keys
    for section, cls in machine_config._SECTIONS.items():
        assert list(parsed[section]) == [f.name for f in dataclasses.fields(cls)], section


@pytest.mark.parametrize("value", [
    'quote " backslash \\ dollar ${x} and a TOML-ish = "[x]"',
    "new\nline\ttab\rreturn",
    "bell \x07 backspace \x08 formfeed \x0c escape \x1b delete \x7f unit-sep \x1f",
    "ünïcödé ✓ 日本",
])
def test_strings_survive_rendering_exactly(value: str) -> None:
    text = render(option_values(host="h", repository={"urls": ["https://x/y.git"],
                                                      "branch": value}))
    assert tomllib.loads(text)["source"]["branch"] == value


def test_toml_serializer_writes_nested_tables_inline_tables_and_floats() -> None:
    text = nix_eval('(import ./nix/toml.nix).render { order = { "" = [ "z" ]; }; } '
                    '{ a = 1.0; z = [ { k = "v"; "odd key" = -2; } [ true ] ]; '
                    't = { u = { w = 3; }; "dotted.name" = "x"; }; }')
    assert tomllib.loads(text) == {
        "z": [{"k": "v", "odd key": -2}, [True]],
        "a": 1.0,
        "t": {"u": {"w": 3}, "dotted.name": "x"},
    }
    assert text.index("z =") < text.index("a =")


def test_toml_serializer_refuses_null_naming_the_key() -> None:
    with pytest.raises(NixEvalError, match=r"t\.k is null"):
        nix_eval("(import ./nix/toml.nix).render { } { t = { k = null; }; }")


def test_helper_unit_is_identical_for_two_agent_packages() -> None:
    one = units(agent=AGENT_A, helper=HELPER_A, config=CONFIG_A)
    two = units(agent=AGENT_B, helper=HELPER_B, config=CONFIG_B,
                otlp={"endpoint": "http://x:4317", "protocol": "grpc", "serviceName": "s"})
    assert one["helper"] == two["helper"]
    assert "/nix/store" not in json.dumps(one["helper"])
    # ...while the units that may change do change, so the fakes were really used.
    assert one["agent"] != two["agent"]
    assert AGENT_B in two["agent"]["serviceConfig"]["ExecStart"]
    assert HELPER_B in two["helperInstall"]["serviceConfig"]["ExecStart"]


def test_helper_unit_starts_the_profile_and_activation_leaves_it_alone() -> None:
    helper = units()["helper"]
    rendered = tomllib.loads(render(option_values(host="h",
                                                  repository={"urls": ["https://x/y.git"]})))
    assert helper["serviceConfig"]["ExecStart"] == (
        f"{rendered['helper']['profile']}/bin/pullnix-helper --config /etc/pullnix/agent.toml")
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
        f"{NIX_PKG}/bin/nix-env --profile /nix/var/nix/profiles/pullnix/helper --set {HELPER_A}")
    assert install["before"] == ["pullnix-helper.service"]
    assert "d /nix/var/nix/profiles/pullnix 0755 root root - -" in units()["tmpfiles"]


def test_helper_socket_directory_gives_sockets_the_agents_group() -> None:
    # The helper makes its socket 0660 as root; setgid on the directory lets the agent in.
    assert "d /run/pullnix 2750 root pullnix - -" in units()["tmpfiles"]


@pytest.mark.parametrize("revision", [
    "0123456789abcdef0123456789abcdef01234567", "dirty", "it's $(rm -rf /) `x` \\ \"q\""])
def test_configuration_revision_is_written_into_the_toplevel(tmp_path: Path,
                                                              revision: str) -> None:
    commands = nix_eval("import ./nix/revision.nix a.revision", revision=revision)
    out = tmp_path / "toplevel"
    out.mkdir()
    # The toplevel's builder runs these lines with $out set, as NixOS does.
    subprocess.run(["sh", "-eu", "-c", commands], env={"out": str(out), "PATH": "/usr/bin:/bin"},
                   check=True, timeout=30)
    assert [p.name for p in out.iterdir()] == ["configuration-revision"]
    # What the agent's downgrade check reads from the running system.
    assert (out / "configuration-revision").read_text() == revision + "\n"


def test_configuration_revision_unset_writes_nothing() -> None:
    assert nix_eval("import ./nix/revision.nix null") == ""


def test_module_records_the_configuration_revision_in_the_toplevel() -> None:
    # NixOS's top-level.nix runs system.systemBuilderCommands in the toplevel's builder.
    module = (NIX / "module.nix").read_text()
    assert ("system.systemBuilderCommands = import ./revision.nix "
            "config.system.configurationRevision;") in module


def test_helper_state_dir_is_readable_by_the_agents_group_only() -> None:
    # The agent watches the journal and reads the committed generations; root alone writes.
    rendered = tomllib.loads(render(option_values(host="edge-01")))
    rule = f"d {rendered['helper']['state_dir']} 2750 root pullnix - -"
    assert rule in units()["tmpfiles"]


def test_agent_unit_is_a_sandboxed_notify_service_restarted_by_activation() -> None:
    agent = units(otlp={"endpoint": "http://jaeger:4318", "protocol": "http/protobuf",
                        "serviceName": "edge-01"})["agent"]
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


def test_vm_test_fleet_spec_is_valid_for_its_host() -> None:
    spec = for_host(load_spec_file(NIX / "tests" / "fleet" / "pullnix.yaml"), "agent").spec
    assert spec.configuration.flake == "nixosConfigurations.{host}"
    assert spec.strategy.trial is True
    assert spec.rollback.automatic is True
    assert [check.name for check in spec.health_checks] == ["git", "fleet-health"]
