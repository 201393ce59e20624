"""Reading a commit's tree without a checkout: one file, or the whole tree exported.

Owns the rules for a path read from a commit (relative, inside the tree, a regular
file and not a directory or a symbolic link, with an error that lists the top
level when it is missing; no larger than the caller's limit, which is checked
from the object's header before anything is unpacked: a small pack can hold a
blob that inflates to gigabytes) and the atomic export of a tree for classic Nix
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

MIB = 1024 * 1024
#: What `read_blob`'s callers read when they have no limit of their own.
READ_LIMIT = 8 * MIB


class FileMissing(TerminalError):
    """The path is not a regular file in the commit: absent, a directory or a symbolic link.
    `fact` says which; the message adds what the caller's setting is (`hint`)."""

    reason = "FileMissing"

    def __init__(self, fact: str, hint: str = "commit it as a regular file") -> None:
        super().__init__(f"{fact}; {hint}")
        self.fact = fact


class FileTooLarge(TerminalError):
    """The file is larger than its reader takes: the desired state is invalid, as for a
    spec too large to parse."""

    reason = "InvalidSpec"


def read_blob(repo: pygit2.Repository, commit: pygit2.Commit, path: str, limit: int) -> bytes:
    """The content of `path` in `commit`: FileMissing when it is not a regular file,
    FileTooLarge when it is over `limit` bytes (known before it is unpacked)."""
    sha = str(commit.id)
    tree = commit.tree
    clean = posixpath.normpath(path.strip("/"))
    try:
        if clean.startswith("..") or clean == ".":
            raise KeyError(clean)
        obj = tree[clean]
    except (KeyError, ValueError):
        top = ", ".join(sorted(e.name for e in tree if e.name)[:20])
        raise FileMissing(f"{path} does not exist in commit {sha} (top level: {top})") from None
    if obj.type != pygit2.enums.ObjectType.BLOB:
        what = "a directory" if obj.type == pygit2.enums.ObjectType.TREE else "a submodule"
        raise FileMissing(f"{path} in commit {sha} is {what}, not a file")
    if obj.filemode == pygit2.enums.FileMode.LINK:
        raise FileMissing(f"{path} in commit {sha} is a symbolic link (never followed)")
    _, size = repo.odb.read_header(obj.id)
    if size > limit:
        raise FileTooLarge(
            f"{path} in commit {sha} is {size / MIB:.1f} MiB; at most {limit / MIB:g} MiB "
            "of it is read (commit a smaller file)"
        )
    blob = repo[obj.id]
    assert isinstance(blob, pygit2.Blob)
    return bytes(blob.data)


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
