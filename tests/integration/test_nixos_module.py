"""The NixOS integration holds without nixpkgs: every .nix file parses, the agent.toml the
module renders (nix/render-config.nix, evaluated by real Nix) is exactly what the agent's
own loader accepts and what each option set means, and the module records the commit a
system was built from. The units are test_nixos_units.py's."""

from __future__ import annotations

import dataclasses
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest

from reconciler.api import for_host, load_spec_file
from reconciler.common import config as machine_config
from reconciler.common.config import parse_machine_config
from tests.support.nixmodule import (
    NIX,
    ROOT,
    NixEvalError,
    deep_merge,
    nix_eval,
    option_values,
    render,
)

pytestmark = pytest.mark.nix

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
        "max_age": "0s",
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
    "telemetry": {"metrics_listen": "", "log_format": "logfmt", "trace_url": ""},
    "nix": {"substituters": [], "trusted_public_keys": []},
    "fleet": {"prometheus_url": "", "query_timeout": "5s"},
}


def test_every_nix_file_parses() -> None:
    """Every .nix file git tracks: the package and module, the flakes, the example fleet
    users start from, the fake NixOS system and the system tier's flake."""
    tracked = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "*.nix"], capture_output=True, text=True, check=True
    ).stdout.split()
    files = sorted(ROOT / name for name in tracked)
    for name in (
        "package.nix",
        "module.nix",
        "render-config.nix",
        "units.nix",
        "revision.nix",
        "tests/vm.nix",
    ):
        assert NIX / name in files, name
    for name in ("flake.nix", "examples/fleet/flake.nix", "reconciler/demo/fakenixos/flake.nix"):
        assert ROOT / name in files, name
    for path in files:
        done = subprocess.run(
            ["nix-instantiate", "--parse", str(path)], capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, f"{path.relative_to(ROOT)}: {done.stderr}"


def test_minimal_options_render_every_key_with_its_default() -> None:
    text = render(
        option_values(host="edge-01", repository={"urls": ["ssh://git@git.example.org/fleet.git"]})
    )
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
            "maxAge": "7d",
        },
        binaryCache={
            "substituters": ["https://cache.example.org"],
            "trustedPublicKeys": ["cache.example.org-1:AAAA"],
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
        fleet={"prometheusUrl": "http://prometheus.example.org:9090", "queryTimeout": "3s"},
        logFormat="json",
        traceUrl="http://jaeger:16686/trace/{traceId}",
        keepGenerations=3,
        agentUid=1234,
        otlp={"endpoint": "http://jaeger:4318", "protocol": "http/protobuf", "serviceName": "edge"},
    )
    expected = deep_merge(
        MINIMAL,
        {
            "host": "edge-02",
            "state_dir": "/srv/pullnix",
            "source": {
                "urls": [
                    "ssh://git@git.example.org/fleet.git",
                    "https://mirror.example.org/fleet.git",
                ],
                "branch": "production",
                "spec_path": "deploy/pullnix.yaml",
                "ssh_key_file": "/run/secrets/pullnix-deploy-key",
                "known_hosts_file": "/etc/pullnix/known_hosts",
                "token_file": "/run/secrets/pullnix-token",
                "allowed_signers_file": "/etc/pullnix/allowed_signers",
                "gpg_keyring": "/etc/pullnix/keyring.gpg",
                "allow_downgrade": True,
                "max_age": "7d",
            },
            "nix": {
                "substituters": ["https://cache.example.org"],
                "trusted_public_keys": ["cache.example.org-1:AAAA"],
            },
            "system": {"keep_generations": 3},
            "helper": {"agent_uids": [0, 1234]},
            "triggers": {
                "interval": "1m30s",
                "jitter": "250ms",
                "webhook_listen": "127.0.0.1:9170",
                "webhook_secret_file": "/run/secrets/pullnix-webhook",
            },
            "telemetry": {
                "metrics_listen": "127.0.0.1:9171",
                "log_format": "json",
                "trace_url": "http://jaeger:16686/trace/{traceId}",
            },
            "fleet": {
                "prometheus_url": "http://prometheus.example.org:9090",
                "query_timeout": "3s",
            },
        },
    )
    parsed = tomllib.loads(render(options))
    assert parsed == expected
    config = parse_machine_config(parsed)
    assert config.fleet.prometheus_url == "http://prometheus.example.org:9090"
    assert config.source.token_file == Path("/run/secrets/pullnix-token")
    assert config.triggers.interval == 90.0
    assert config.triggers.jitter == 0.25
    assert config.telemetry.log_format == "json"
    assert config.telemetry.trace_url == "http://jaeger:16686/trace/{traceId}"
    assert config.source.max_age == 7 * 86400
    assert config.nix.trusted_public_keys == ("cache.example.org-1:AAAA",)


def test_extra_settings_override_and_add_keys_of_agent_toml() -> None:
    options = option_values(
        host="edge-03",
        repository={"urls": ["https://git.example.org/fleet.git"]},
        extraSettings={
            "telemetry": {"log_format": "json"},
            "system": {"current_system": "/run/current-system", "keep_generations": 20},
            "host": "edge-03.example.org",
        },
    )
    expected = deep_merge(
        MINIMAL,
        {
            "host": "edge-03.example.org",
            "source": {"urls": ["https://git.example.org/fleet.git"]},
            "system": {"keep_generations": 20},
            "telemetry": {"log_format": "json"},
        },
    )
    parsed = tomllib.loads(render(options))
    assert parsed == expected
    assert parse_machine_config(parsed).system.keep_generations == 20


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"source": {"url": ["x"]}}, "extraSettings.source.url"),
        ({"webhook": {"listen": "x"}}, "extraSettings.webhook"),
        ({"triggers": "5m"}, "extraSettings.triggers: must be an attribute set"),
    ],
)
def test_extra_settings_with_a_key_agent_toml_lacks_fail_the_build_naming_it(
    extra: dict[str, Any],
    named: str,
) -> None:
    options = option_values(host="h", repository={"urls": ["https://x/y.git"]}, extraSettings=extra)
    with pytest.raises(NixEvalError, match=named.replace(".", r"\.")):
        render(options)


def test_render_writes_every_key_the_loader_knows_and_no_other() -> None:
    text = render(option_values(host="h", repository={"urls": ["https://x/y.git"]}))
    parsed = tomllib.loads(text)
    loader_keys = {"host", "state_dir"} | set(machine_config._SECTIONS)
    assert set(parsed) == loader_keys
    for section, cls in machine_config._SECTIONS.items():
        assert list(parsed[section]) == [f.name for f in dataclasses.fields(cls)], section


@pytest.mark.parametrize(
    "value",
    [
        'quote " backslash \\ dollar ${x} and a TOML-ish = "[x]"',
        "new\nline\ttab\rreturn",
        "bell \x07 backspace \x08 formfeed \x0c escape \x1b delete \x7f unit-sep \x1f",
        "ünïcödé ✓ 日本",
    ],
)
def test_strings_survive_rendering_exactly(value: str) -> None:
    text = render(
        option_values(host="h", repository={"urls": ["https://x/y.git"], "branch": value})
    )
    assert tomllib.loads(text)["source"]["branch"] == value


def test_toml_serializer_writes_nested_tables_inline_tables_and_floats() -> None:
    text = nix_eval(
        '(import ./nix/toml.nix).render { order = { "" = [ "z" ]; }; } '
        '{ a = 1.0; z = [ { k = "v"; "odd key" = -2; } [ true ] ]; '
        't = { u = { w = 3; }; "dotted.name" = "x"; }; }'
    )
    assert tomllib.loads(text) == {
        "z": [{"k": "v", "odd key": -2}, [True]],
        "a": 1.0,
        "t": {"u": {"w": 3}, "dotted.name": "x"},
    }
    assert text.index("z =") < text.index("a =")


def test_toml_serializer_refuses_null_naming_the_key() -> None:
    with pytest.raises(NixEvalError, match=r"t\.k is null"):
        nix_eval("(import ./nix/toml.nix).render { } { t = { k = null; }; }")


@pytest.mark.parametrize(
    "revision",
    ["0123456789abcdef0123456789abcdef01234567", "dirty", 'it\'s $(rm -rf /) `x` \\ "q"'],
)
def test_configuration_revision_is_written_into_the_toplevel(tmp_path: Path, revision: str) -> None:
    commands = nix_eval("import ./nix/revision.nix a.revision", revision=revision)
    out = tmp_path / "toplevel"
    out.mkdir()
    # The toplevel's builder runs these lines with $out set, as NixOS does.
    subprocess.run(
        ["sh", "-eu", "-c", commands],
        env={"out": str(out), "PATH": "/usr/bin:/bin"},
        check=True,
        timeout=30,
    )
    assert [p.name for p in out.iterdir()] == ["configuration-revision"]
    # What the agent's downgrade check reads from the running system.
    assert (out / "configuration-revision").read_text() == revision + "\n"


def test_configuration_revision_unset_writes_nothing() -> None:
    assert nix_eval("import ./nix/revision.nix null") == ""


def test_module_records_the_configuration_revision_in_the_toplevel() -> None:
    # NixOS's top-level.nix runs system.systemBuilderCommands in the toplevel's builder.
    module = (NIX / "module.nix").read_text()
    assert (
        "system.systemBuilderCommands = import ./revision.nix config.system.configurationRevision;"
    ) in module


def test_vm_test_fleet_spec_is_valid_for_its_host() -> None:
    spec = for_host(load_spec_file(NIX / "tests" / "fleet" / "pullnix.yaml"), "agent").spec
    assert spec.configuration.flake == "nixosConfigurations.{host}"
    assert spec.strategy.trial is True
    assert spec.rollback.automatic is True
    assert [check.name for check in spec.health_checks] == ["git", "fleet-health"]
