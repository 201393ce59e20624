"""Reading a commit's tree without a checkout: one file, or the whole tree exported.

Owns the rules for a path read from a commit (relative, inside the tree, a regular
file and not a directory or a symbolic link, with an error that lists the top
level when it is missing) and the atomic export of a tree for classic Nix
configurations (into a sibling temporary directory, then renamed).

Must not: fetch, or choose the commit (the mirror hands it the commit object).
"""

from __future__ import annotations

import posixpath
import shutil
import tempfile
from pathlib import Path

import pygit2

from reconciler.core.errors import TerminalError


def read_blob(commit: pygit2.Commit, path: str) -> bytes:
    """The content of `path` in `commit` (TerminalError FileMissing when it is not a file)."""
    sha = str(commit.id)
    tree = commit.tree
    clean = posixpath.normpath(path.strip("/"))
    try:
        if clean.startswith("..") or clean == ".":
            raise KeyError(clean)
        obj = tree[clean]
    except (KeyError, ValueError):
        top = ", ".join(sorted(e.name for e in tree if e.name)[:20])
        raise TerminalError(
            f"{path} does not exist in commit {sha} (top level: {top}); "
            "add it to the repository or fix [source] spec_path",
            reason="FileMissing",
        ) from None
    if not isinstance(obj, pygit2.Blob):
        raise TerminalError(
            f"{path} in commit {sha} is a directory, not a file", reason="FileMissing"
        )
    if obj.filemode == pygit2.enums.FileMode.LINK:
        raise TerminalError(
            f"{path} in commit {sha} is a symbolic link; point spec_path at the file itself",
            reason="FileMissing",
        )
    return bytes(obj.data)


def export_commit(repo: pygit2.Repository, commit: pygit2.Commit, dest: Path) -> Path:
    """Write the tree of `commit` to `dest` (which must not exist), atomically: into a
    sibling temp directory first, then renamed. For classic Nix configs."""
    if dest.exists():
        raise TerminalError(
            f"cannot export {commit.id} to {dest}: it already exists", reason="ExportFailed"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        strategy = (
            pygit2.enums.CheckoutStrategy.FORCE | pygit2.enums.CheckoutStrategy.DONT_UPDATE_INDEX
        )
        repo.checkout_tree(  # type: ignore[no-untyped-call]
            commit.tree, directory=str(tmp), strategy=strategy
        )
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest
