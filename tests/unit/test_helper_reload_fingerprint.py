"""The helper's config watch sees the change a NixOS switch makes: /etc/pullnix/agent.toml
repointed at another store file whose times are the store's fixed ones."""

from __future__ import annotations

import os
from pathlib import Path

from reconciler.common.config import MachineConfig
from reconciler.helper.reload import ConfigReloader, fingerprint


def store_file(root: Path, name: str, text: str) -> Path:
    path = root / name
    path.write_text(text)
    os.utime(path, (1, 1))  # every store file has mtime 1
    return path


def test_a_repointed_symlink_is_a_change_even_with_equal_times_and_size(tmp_path: Path) -> None:
    one = store_file(tmp_path, "aaaa-pullnix-agent.toml", 'host = "a"\n')
    two = store_file(tmp_path, "bbbb-pullnix-agent.toml", 'host = "b"\n')
    link = tmp_path / "agent.toml"
    link.symlink_to(one)
    before = fingerprint(link)
    assert fingerprint(link) == before
    link.unlink()
    link.symlink_to(two)
    assert fingerprint(link) != before


def test_a_missing_file_is_refused_and_the_old_config_kept(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text('host = "a"\n[helper]\nagent_uids = [0, 399]\n')
    taken: list[MachineConfig] = []
    old = MachineConfig(host="a")
    reloader = ConfigReloader(path, old, fingerprint(path), taken.append, clock=lambda: 5.0)
    path.unlink()
    assert reloader.check() is False
    assert reloader.config is old
    report = reloader.report()
    assert "no such file" in report["error"]
    assert report["errorAt"] == 5.0
    path.write_text('host = "a"\n[helper]\nagent_uids = [0, 400]\n')
    assert reloader.check() is True
    assert [c.helper.agent_uids for c in taken] == [(0, 400)]
    assert reloader.report()["error"] is None


def test_an_unchanged_file_is_not_read_again(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text('host = "a"\n')
    taken: list[MachineConfig] = []
    reloader = ConfigReloader(path, MachineConfig(host="a"), fingerprint(path), taken.append)
    assert reloader.check() is False
    assert taken == []
