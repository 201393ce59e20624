"""A state file that would not change is not rewritten (no temp file, rename or fsync)."""

from __future__ import annotations

from pathlib import Path

from reconciler.common.atomic import write_json_atomic


def test_the_same_content_is_not_written_again_and_a_change_is(tmp_path: Path) -> None:
    path = tmp_path / "record.json"
    assert write_json_atomic(path, {"a": 1}, unless_same=True) is True
    inode = path.stat().st_ino
    assert write_json_atomic(path, {"a": 1}, unless_same=True) is False
    assert path.stat().st_ino == inode  # not replaced
    assert write_json_atomic(path, {"a": 2}, unless_same=True) is True
    assert path.stat().st_ino != inode  # replaced by rename, as every atomic write is
    assert path.read_text() == '{\n  "a": 2\n}\n'


def test_without_unless_same_it_always_writes(tmp_path: Path) -> None:
    path = tmp_path / "status.json"
    write_json_atomic(path, {"a": 1})
    inode = path.stat().st_ino
    assert write_json_atomic(path, {"a": 1}) is True
    assert path.stat().st_ino != inode
