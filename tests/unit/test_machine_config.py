"""The machine config loader (reconciler/common/config.py) on real agent.toml files."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from reconciler.common.config import (
    ConfigError,
    MachineConfig,
    load_machine_config,
    require_urls,
)

FULL = """
host = "edge-01"
state_dir = "/srv/pullnix"

[source]
urls = ["ssh://git@git.example.org/fleet.git", "https://git.example.org/fleet.git"]
branch = "production"
spec_path = "deploy/pullnix.yaml"
ssh_key_file = "/etc/pullnix/deploy_key"
known_hosts_file = ""
token_file = ""
allowed_signers_file = "/etc/pullnix/allowed_signers"
gpg_keyring = ""
allow_downgrade = true

[system]
keep_generations = 3

[helper]
agent_uids = [0, 399]

[triggers]
interval = "1h30m"
jitter = "250ms"
webhook_listen = "127.0.0.1:9170"

[telemetry]
log_format = "json"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return path


def fails(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_machine_config(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    return message.removeprefix(f"{path}: ")


def test_an_empty_file_is_all_defaults_and_this_machines_host_name(tmp_path: Path):
    config = load_machine_config(write(tmp_path, ""))
    assert config == MachineConfig(host=socket.gethostname())
    assert config.state_dir == Path("/var/lib/pullnix")
    assert config.source.urls == ()
    assert config.source.branch == "main"
    assert config.source.spec_path == "pullnix.yaml"
    assert config.source.ssh_key_file is None
    assert config.system.profile == Path("/nix/var/nix/profiles/system")
    assert config.helper.socket == Path("/run/pullnix/helper.sock")
    assert config.helper.agent_uids == (0,)
    assert (config.triggers.interval, config.triggers.jitter) == (300.0, 30.0)
    assert config.telemetry.log_format == "logfmt"


def test_every_key_is_read(tmp_path: Path):
    config = load_machine_config(write(tmp_path, FULL))
    assert config.host == "edge-01"
    assert config.state_dir == Path("/srv/pullnix")
    assert config.source.urls == (
        "ssh://git@git.example.org/fleet.git",
        "https://git.example.org/fleet.git",
    )
    assert config.source.branch == "production"
    assert config.source.ssh_key_file == Path("/etc/pullnix/deploy_key")
    assert config.source.known_hosts_file is None  # "" means none
    assert config.source.allowed_signers_file == Path("/etc/pullnix/allowed_signers")
    assert config.source.allow_downgrade is True
    assert config.system.keep_generations == 3
    assert config.helper.agent_uids == (0, 399)
    assert (config.triggers.interval, config.triggers.jitter) == (5400.0, 0.25)
    assert config.triggers.webhook_listen == "127.0.0.1:9170"
    assert config.telemetry.log_format == "json"


def test_an_unknown_top_level_key_is_named_with_the_known_ones(tmp_path: Path):
    assert fails(tmp_path, 'hots = "edge-01"\n') == (
        "unknown key 'hots' (known: agent, fleet, helper, host, nix, source, state_dir, system, "
        "telemetry, triggers)"
    )


def test_an_unknown_key_in_a_section_is_named_with_its_section(tmp_path: Path):
    message = fails(tmp_path, '[source]\nbrnach = "main"\n')
    assert message.startswith(
        "unknown key 'source.brnach' (known in [source]: "
        "allow_downgrade, allowed_signers_file, branch,"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("host = 7\n", "host: expected a string, got an integer 7"),
        (
            '[source]\nurls = "ssh://x"\n',
            "source.urls: expected a list of non-empty strings, got a string 'ssh://x'",
        ),
        (
            '[source]\nallow_downgrade = "yes"\n',
            "source.allow_downgrade: expected true or false, got a string 'yes'",
        ),
        (
            '[system]\nkeep_generations = "10"\n',
            "system.keep_generations: expected an integer, got a string '10'",
        ),
        (
            "[system]\nkeep_generations = true\n",
            "system.keep_generations: expected an integer, got a boolean True",
        ),
        (
            '[helper]\nagent_uids = ["root"]\n',
            "helper.agent_uids: expected a list of integers, got a list ['root']",
        ),
        (
            "[triggers]\ninterval = 300\n",
            'triggers.interval: expected a duration such as "5m", got an integer 300',
        ),
        ('source = "x"\n', "[source] must be a table, not a string"),
        ('[system]\nprofile = ""\n', "system.profile: expected a path, got a string ''"),
    ],
)
def test_a_value_of_the_wrong_type_names_the_key_and_what_it_wants(
    tmp_path: Path, text: str, expected: str
):
    assert fails(tmp_path, text) == expected


@pytest.mark.parametrize("duration", ["5 minutes", "5", "m5", "-5s", ""])
def test_a_bad_duration_says_what_a_duration_looks_like(tmp_path: Path, duration: str):
    assert fails(tmp_path, f'[triggers]\njitter = "{duration}"\n') == (
        f"triggers.jitter: {duration!r} is not a duration: write a number with a unit, "
        "such as 30s, 5m, 1h or 1h30m (units: ms, s, m, h, d)"
    )


def test_the_nix_section_and_max_age_in_days_are_read(tmp_path: Path):
    path = tmp_path / "agent.toml"
    path.write_text(
        'host = "edge-01"\n[source]\nmax_age = "7d"\n[nix]\n'
        'substituters = ["http://127.0.0.1:8080"]\n'
        'trusted_public_keys = ["cache-1:AAAA"]\n'
    )
    config = load_machine_config(path)
    assert config.source.max_age == 7 * 86400
    assert config.nix.substituters == ("http://127.0.0.1:8080",)
    assert config.nix.trusted_public_keys == ("cache-1:AAAA",)
    assert load_machine_config(write(tmp_path, 'host = "x"\n')).source.max_age == 0.0
    monthly = write(tmp_path, 'host = "x"\n[source]\nmax_age = "31d"\n')
    assert load_machine_config(monthly).source.max_age == 31 * 86400  # a monthly heartbeat


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '[nix]\ntrusted_public_keys = ["AAAA"]\n',
            "nix.trusted_public_keys: 'AAAA' is not a Nix public key; write NAME:BASE64 as "
            "`nix-store --generate-binary-cache-key` prints it",
        ),
        ('[nix]\nsubstituters = "http://x"\n', "nix.substituters: expected a list"),
        # Nix only warns "don't know how to open Nix store" and the fetch looks like a
        # cache without the path (NotInCache, retried forever): refuse it here instead.
        (
            '[nix]\nsubstituters = ["cache.example.org"]\n',
            "nix.substituters: 'cache.example.org' is not a Nix store URL; write one such as "
            "https://cache.example.org",
        ),
        # Nix splits the option at whitespace: one entry must not smuggle in a second cache.
        (
            '[nix]\nsubstituters = ["https://a.example.org https://b.example.org"]\n',
            "nix.substituters: 'https://a.example.org https://b.example.org' is not a Nix store",
        ),
        ('[nix]\nsubstituters = [""]\n', "nix.substituters: expected a list of non-empty"),
        (
            '[nix]\ntrusted_public_keys = ["a-1:AAAA b-1:BBBB"]\n',
            "nix.trusted_public_keys: 'a-1:AAAA b-1:BBBB' is not a Nix public key",
        ),
        ('[source]\nmax_age = "a week"\n', "source.max_age: 'a week' is not a duration"),
        ('[source]\nmax_age = "367d"\n', "source.max_age: '367d' is longer than 8784h"),
        ('[triggers]\ninterval = "8d"\n', "triggers.interval: '8d' is longer than 168h"),
    ],
)
def test_a_bad_nix_section_or_max_age_names_the_key(tmp_path: Path, text: str, expected: str):
    assert fails(tmp_path, text).startswith(expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '[telemetry]\nlog_format = "text"\n',
            "telemetry.log_format: 'text' is not one of logfmt, json",
        ),
        ("[system]\nkeep_generations = 0\n", "system.keep_generations: must be at least 1"),
        ("[helper]\nagent_uids = [-1]\n", "helper.agent_uids: -1 is not a uid"),
        ('host = ""\n', "host: must not be empty"),
    ],
)
def test_values_out_of_their_range_are_refused(tmp_path: Path, text: str, expected: str):
    assert fails(tmp_path, text) == expected


def test_bad_toml_is_reported_with_its_line(tmp_path: Path):
    message = fails(tmp_path, 'host = "edge-01"\n\n[source\nbranch = "main"\n')
    assert message.startswith("not valid TOML: ")
    assert "(at line 3, column 8)" in message


def test_a_missing_file_says_where_to_write_it(tmp_path: Path):
    path = tmp_path / "absent.toml"
    with pytest.raises(ConfigError) as caught:
        load_machine_config(path)
    assert str(caught.value) == (
        f"{path}: no such file; write the machine config there or pass --config"
    )


def test_a_non_utf8_file_cannot_be_read(tmp_path: Path):
    path = tmp_path / "agent.toml"
    path.write_bytes(b'host = "caf\xe9"\n')
    with pytest.raises(ConfigError, match="cannot read"):
        load_machine_config(path)


def test_the_agent_needs_a_url_to_pull_from(tmp_path: Path):
    config = load_machine_config(write(tmp_path, 'host = "a"\n'))
    with pytest.raises(ConfigError) as caught:
        require_urls(config, "agent.toml")
    assert str(caught.value) == ("agent.toml: source.urls: list at least one git URL to pull from")
    require_urls(load_machine_config(write(tmp_path, FULL)))


def test_the_fleet_section_names_prometheus(tmp_path: Path):
    path = tmp_path / "agent.toml"
    path.write_text('host = "edge-01"\n[fleet]\nprometheus_url = "http://prom:9090"\n')
    assert load_machine_config(path).fleet.prometheus_url == "http://prom:9090"
    assert fails(tmp_path, '[fleet]\nprometheus_url = "prom:9090"\n') == (
        "fleet.prometheus_url: 'prom:9090' is not an http:// or https:// URL "
        "(such as http://prometheus.example.org:9090)"
    )
