"""The repository explains itself: nothing in it points at a file that no clone has.

Every tracked text file is read; none may cite a design document outside the
repository (the project's own account is docs/design.md), and every `docs/` file
that README.md or a module names must exist.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: Spelt in pieces so that this file does not match itself.
OUTSIDE = ("../" + "shared", "DESIGN" + ".md")


def tracked_texts() -> dict[str, str]:
    names = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    texts: dict[str, str] = {}
    for name in filter(None, names):
        path = ROOT / name.decode()
        if not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" not in data:
            texts[name.decode()] = data.decode("utf-8", errors="replace")
    return texts


def test_no_file_points_outside_the_repository() -> None:
    texts = tracked_texts()
    assert "README.md" in texts
    found = [
        f"{name}:{n}: {line.strip()}"
        for name, text in texts.items()
        for n, line in enumerate(text.splitlines(), 1)
        if any(marker in line for marker in OUTSIDE)
    ]
    assert not found, "cite docs/design.md instead:\n" + "\n".join(found)


def test_every_docs_file_that_is_named_exists() -> None:
    named = {
        match
        for text in tracked_texts().values()
        for match in re.findall(r"\bdocs/[\w./-]+\.md\b", text)
    }
    assert "docs/design.md" in named
    missing = sorted(n for n in named if not (ROOT / n).is_file())
    assert not missing, missing
