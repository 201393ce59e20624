"""How the helper's gitRemote check reaches a remote: the machine's key, pinned hosts, token."""

from __future__ import annotations

import shlex
from pathlib import Path

from reconciler.helper.config import SourceConfig
from reconciler.helper.health import git_environment


def test_ssh_uses_the_deploy_key_and_only_pinned_host_keys(tmp_path: Path) -> None:
    source = SourceConfig(urls=("ssh://git@git.example.org/fleet.git",),
                          ssh_key_file=Path("/etc/pullnix/key"),
                          known_hosts_file=Path("/etc/pullnix/known hosts"))
    env = git_environment(source.urls[0], source)
    assert shlex.split(env["GIT_SSH_COMMAND"]) == [
        "ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
        "-i", "/etc/pullnix/key", "-o", "IdentitiesOnly=yes",
        "-o", "UserKnownHostsFile=/etc/pullnix/known hosts"]
    assert env["GIT_TERMINAL_PROMPT"] == "0"
    assert "GIT_CONFIG_COUNT" not in env


def test_without_pinned_hosts_an_unknown_host_is_still_refused() -> None:
    env = git_environment("ssh://h/r", SourceConfig())
    assert "StrictHostKeyChecking=yes" in shlex.split(env["GIT_SSH_COMMAND"])


def test_token_goes_in_an_http_header_kept_out_of_argv(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    source = SourceConfig(token_file=token)
    env = git_environment("https://git.example.org/fleet.git", source)
    assert (env["GIT_CONFIG_COUNT"], env["GIT_CONFIG_KEY_0"], env["GIT_CONFIG_VALUE_0"]) == (
        "1", "http.extraHeader", "Authorization: Bearer s3cret")
    assert "GIT_CONFIG_COUNT" not in git_environment("ssh://h/r", source)  # only for http(s)
