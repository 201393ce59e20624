"""The module's defects of issue 16, each proven by real Nix without nixpkgs: the keys the
units depend on cannot be overridden, a secret in the store and NixOS's placeholder host
name fail the build, ssh is always on the agent's PATH, proxies and the CA bundle reach
both processes, the helper has no start limit, openFirewall opens exactly the configured
ports, and the flake exports the module as a path."""

from __future__ import annotations

import json
import tomllib
from typing import Any

import pytest

from tests.support.nixmodule import (
    NIX,
    NixEvalError,
    failed_assertions,
    nix_eval,
    option_values,
    render,
    units,
)

pytestmark = pytest.mark.nix

URLS = {"urls": ["https://git.example.org/fleet.git"]}


def _options(**over: Any) -> dict[str, Any]:
    return option_values(repository=URLS, **over)


@pytest.mark.parametrize(
    ("extra", "named", "owner"),
    [
        ({"state_dir": "/srv/elsewhere"}, "extraSettings.state_dir", "services.pullnix.stateDir"),
        ({"helper": {"socket": "/tmp/h.sock"}}, "extraSettings.helper.socket", "/run/pullnix"),
        ({"helper": {"profile": "/x"}}, "extraSettings.helper.profile", "profiles/pullnix"),
        ({"helper": {"state_dir": "/x"}}, "extraSettings.helper.state_dir", "/nix/var/pullnix"),
        ({"agent": {"socket": "/tmp/a.sock"}}, "extraSettings.agent.socket", "/run/pullnix/agent"),
    ],
)
def test_extra_settings_cannot_move_what_the_units_depend_on(
    extra: dict[str, Any], named: str, owner: str
) -> None:
    with pytest.raises(NixEvalError, match=named.replace(".", r"\.")) as raised:
        render(_options(host="h", extraSettings=extra))
    assert "the units depend on this key" in str(raised.value)
    assert owner in str(raised.value)


def test_extra_settings_still_reach_the_keys_the_units_do_not_depend_on() -> None:
    text = render(
        _options(host="h", extraSettings={"system": {"keep_generations": 20}, "host": "h2"})
    )
    parsed = tomllib.loads(text)
    assert parsed["system"]["keep_generations"] == 20
    assert parsed["host"] == "h2"


@pytest.mark.parametrize(
    "option",
    [("auth", "sshKeyFile"), ("auth", "tokenFile"), ("webhook", "secretFile")],
)
def test_a_secret_interpolated_from_a_nix_path_fails_the_build(option: tuple[str, str]) -> None:
    section, key = option
    # "${./key}": what a user writes to turn a path into a string; Nix copies the file
    # into the store first. Evaluated for real, with one of the repository's own files.
    messages = nix_eval(
        "let cfg = a.options // { ${a.section} = a.options.${a.section} // "
        '{ ${a.key} = "${./nix/paths.nix}"; }; }; '
        "in map (x: x.message) (builtins.filter (x: !x.assertion) "
        "((import ./nix/wiring.nix).assertions cfg a.hostName))",
        options=_options(host="h", webhook={"listen": "127.0.0.1:9170", "secretFile": "/run/s"}),
        hostName="edge-01",
        section=section,
        key=key,
    )
    assert len(messages) == 1, messages
    assert f"services.pullnix.{section}.{key}" in messages[0]
    assert "is in the Nix store, which every user can\nread" in messages[0]


def test_secrets_given_as_path_strings_outside_the_store_pass() -> None:
    options = _options(
        auth={"sshKeyFile": "/run/secrets/key", "tokenFile": "/run/secrets/token"},
        webhook={"listen": "0.0.0.0:9170", "secretFile": "/run/secrets/hook"},
    )
    assert failed_assertions(options, "edge-01") == []


def test_a_secret_named_by_a_literal_store_path_fails_the_build_too() -> None:
    options = _options(auth={"tokenFile": "/nix/store/0000-token"})
    (message,) = failed_assertions(options, "edge-01")
    assert "services.pullnix.auth.tokenFile" in message


def test_nixos_default_host_name_is_never_taken_silently() -> None:
    (message,) = failed_assertions(_options(), "nixos")
    assert "NixOS's default" in message
    assert 'services.pullnix.host = "nixos"' in message
    # Said on purpose, it is accepted; a real host name is taken as it is.
    assert failed_assertions(_options(host="nixos"), "nixos") == []
    assert failed_assertions(_options(), "edge-01") == []
    assert nix_eval("(import ./nix/wiring.nix).host a.o a.n", o=_options(), n="edge-01") == (
        "edge-01"
    )
    assert nix_eval(
        "(import ./nix/wiring.nix).host a.o a.n", o=_options(host="x"), n="edge-01"
    ) == ("x")


def test_no_host_at_all_fails_the_build() -> None:
    (message,) = failed_assertions(_options(), "")
    assert "services.pullnix.host is empty" in message


def _agent_path(**over: Any) -> list[str]:
    fake = {"nix": "NIX", "git": "GIT", "openssh": "OPENSSH", "gnupg": "GNUPG"}
    result = nix_eval(
        "(import ./nix/wiring.nix).agentPath a.pkgs a.cfg", pkgs=fake, cfg=_options(**over)
    )
    assert isinstance(result, list)
    return result


def test_ssh_is_on_the_agents_path_without_any_trust_setting() -> None:
    # git+ssh flake inputs and ssh:// remotes need it whether or not commits are signed.
    assert _agent_path() == ["NIX", "GIT", "OPENSSH"]
    assert _agent_path(trust={"gpgKeyring": "/etc/pullnix/keyring.gpg"}) == [
        "NIX",
        "GIT",
        "OPENSSH",
        "GNUPG",
    ]
    assert _agent_path(extraPath=["VULNIX"]) == ["NIX", "GIT", "OPENSSH", "VULNIX"]


PROXIES = {
    "http_proxy": "http://proxy.example.org:3128",
    "https_proxy": "http://proxy.example.org:3128",
    "no_proxy": "127.0.0.1,localhost",
}


def test_proxies_and_the_ca_bundle_reach_the_agent_and_the_helper() -> None:
    environment = nix_eval(
        "(import ./nix/wiring.nix).networkEnvironment a.proxies (import ./nix/paths.nix).caBundle",
        proxies=PROXIES,
    )
    rendered = units(networkEnvironment=environment)
    bundle = "/etc/ssl/certs/ca-certificates.crt"
    for name in ("agent", "helper"):
        env = rendered[name]["environment"]
        for key, value in PROXIES.items():
            assert env[key] == value, (name, key)
        for key in ("CURL_CA_BUNDLE", "SSL_CERT_FILE", "NIX_SSL_CERT_FILE"):
            assert env[key] == bundle, (name, key)
    # The helper's unit still names no store path, so activation has nothing to restart.
    assert "/nix/store" not in json.dumps(rendered["helper"])
    assert "http_proxy" not in units()["agent"]["environment"]


def test_helper_unit_has_no_start_limit() -> None:
    helper = units()["helper"]
    assert helper["startLimitIntervalSec"] == 0
    assert helper["serviceConfig"]["Restart"] == "always"


@pytest.mark.parametrize(
    ("webhook", "metrics", "ports"),
    [
        ({"listen": "0.0.0.0:9170", "openFirewall": True}, {}, [9170]),
        ({"listen": "0.0.0.0:9170"}, {"listen": "[::]:9171", "openFirewall": True}, [9171]),
        (
            {"listen": "0.0.0.0:9170", "openFirewall": True},
            {"listen": "0.0.0.0:9171", "openFirewall": True},
            [9170, 9171],
        ),
        ({"listen": "0.0.0.0:9170"}, {"listen": "0.0.0.0:9171"}, []),
    ],
)
def test_open_firewall_opens_exactly_the_configured_ports(
    webhook: dict[str, Any], metrics: dict[str, Any], ports: list[int]
) -> None:
    options = _options(webhook={**webhook, "secretFile": "/run/s"}, metrics=metrics)
    assert nix_eval("(import ./nix/wiring.nix).firewallPorts a.o", o=options) == ports
    assert failed_assertions(options, "edge-01") == []


def test_open_firewall_without_an_address_fails_the_build() -> None:
    (message,) = failed_assertions(_options(metrics={"openFirewall": True}), "edge-01")
    assert message.startswith("services.pullnix.metrics.openFirewall is set")


def test_module_wires_every_decision_of_wiring_nix() -> None:
    module = (NIX / "module.nix").read_text()
    for line in (
        "assertions = wiring.assertions cfg config.networking.hostName;",
        "networking.firewall.allowedTCPPorts = wiring.firewallPorts cfg;",
        "agentPath = wiring.agentPath {",
        "networkEnvironment = wiring.networkEnvironment config.networking.proxy.envVars",
        "host = wiring.host cfg config.networking.hostName;",
        "import ./render-config.nix (cfg // { inherit host; })",
    ):
        assert line in module, line


def test_flake_exports_the_module_as_its_path() -> None:
    # A path gives the module system a key (the file), so a module imported twice, by
    # the fleet and by another flake, declares its options once; an import has no key.
    exported = nix_eval(
        "let outputs = (import ./flake.nix).outputs { self = outputs; nixpkgs = { }; }; "
        "m = outputs.nixosModules.default; "
        "in { isPath = builtins.isPath m; file = baseNameOf (toString m); "
        "same = outputs.nixosModules.pullnix == m; }"
    )
    assert exported == {"isPath": True, "file": "module.nix", "same": True}
