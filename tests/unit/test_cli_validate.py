"""`pullnix validate` and `pullnix schema`, run as the real installed command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
from click.testing import CliRunner

from reconciler.cli.main import CliContext, cli

ROOT = Path(__file__).parent.parent.parent
PULLNIX = Path(sys.executable).parent / "pullnix"
EXAMPLE = "examples/fleet/pullnix.yaml"
TYPO = "tests/data/invalid/unknown-field-in-health-check.yaml"
BOMB = "tests/data/invalid/alias-bomb.yaml"


def pullnix(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PULLNIX), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_a_valid_file_exits_0():
    run = pullnix("validate", EXAMPLE)
    assert (run.returncode, run.stdout, run.stderr) == (0, f"{EXAMPLE}: valid\n", "")


def test_an_invalid_file_exits_1_with_one_line_per_problem():
    run = pullnix("validate", TYPO)
    assert run.returncode == 1
    assert run.stdout == (
        f"{TYPO}:11:7: spec.healthChecks[0].retires: unknown field; did you mean 'retries'?\n"
    )
    assert run.stderr == "1 problem in 1 file\n"


def test_one_invalid_file_among_valid_ones_fails_the_run():
    run = pullnix("validate", EXAMPLE, TYPO, BOMB)
    assert run.returncode == 1
    assert run.stdout.splitlines() == [
        f"{EXAMPLE}: valid",
        f"{TYPO}:11:7: spec.healthChecks[0].retires: unknown field; did you mean 'retries'?",
        f"{BOMB}:1:4: YAML anchors and aliases (&name, *name) are not allowed in "
        "pullnix.yaml; write the value out in full",
    ]
    assert run.stderr == "2 problems in 2 files\n"


def test_json_output_is_a_list_of_files_with_their_issues():
    run = pullnix("validate", "--json", EXAMPLE, TYPO)
    assert run.returncode == 1
    assert json.loads(run.stdout) == [
        {"file": EXAMPLE, "valid": True, "issues": []},
        {
            "file": TYPO,
            "valid": False,
            "issues": [
                {
                    "file": TYPO,
                    "line": 11,
                    "col": 7,
                    "path": "spec.healthChecks[0].retires",
                    "message": "unknown field; did you mean 'retries'?",
                }
            ],
        },
    ]


def test_a_host_is_checked_with_its_overrides_merged():
    for host in ("edge-01", "server-01", "elsewhere"):
        run = pullnix("validate", "--host", host, EXAMPLE)
        assert (run.returncode, run.stdout) == (0, f"{EXAMPLE}: valid\n")


def test_a_missing_file_is_a_failure_not_a_crash():
    run = pullnix("validate", "no/such/pullnix.yaml")
    assert run.returncode == 1
    assert run.stdout == (
        "no/such/pullnix.yaml:1:1: cannot read the file: No such file or directory\n"
    )


def test_validate_and_schema_never_read_the_machine_config(tmp_path: Path):
    absent = str(tmp_path / "absent.toml")
    assert pullnix("--config", absent, "validate", EXAMPLE).returncode == 0
    assert pullnix("validate", EXAMPLE, env={"PULLNIX_CONFIG": absent}).returncode == 0
    assert pullnix("schema", env={"PULLNIX_CONFIG": absent}).returncode == 0


def test_validate_without_files_is_a_usage_error():
    run = pullnix("validate")
    assert run.returncode == 2
    assert "Missing argument 'FILES...'" in run.stderr


def test_schema_prints_the_json_schema():
    run = pullnix("schema")
    assert run.returncode == 0
    printed = json.loads(run.stdout)
    assert printed["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert set(printed["required"]) == {"apiVersion", "kind", "metadata", "spec"}


def test_the_group_keeps_the_config_path_for_later_commands(tmp_path: Path):
    seen: list[CliContext] = []

    @click.command()
    @click.pass_obj
    def probe(obj: CliContext) -> None:
        seen.append(obj)

    group = click.Group(
        "pullnix",
        callback=cli.callback,
        params=cli.params,
        commands={**cli.commands, "probe": probe},
    )
    config = tmp_path / "agent.toml"
    config.write_text('host = "edge-01"\n')
    runner = CliRunner()
    assert runner.invoke(group, ["--config", str(config), "probe"]).exit_code == 0
    assert runner.invoke(group, ["probe"], env={"PULLNIX_CONFIG": "/x/agent.toml"}).exit_code == 0
    assert runner.invoke(group, ["probe"], env={"PULLNIX_CONFIG": None}).exit_code == 0
    assert [c.config_path for c in seen] == [
        config,
        Path("/x/agent.toml"),
        Path("/etc/pullnix/agent.toml"),
    ]
    assert seen[0].machine_config().host == "edge-01"
