"""The demo's fleet repository: a bare git repository written with pygit2, no work tree.

Owns the demo's "remote": `fleet.git` with the fake system's flake, its
`fixture.json` knobs and `pullnix.yaml`, and the commits the demo pushes to
it (each a whole tree on top of `main`). The agent follows it over file://,
exactly as it would follow a forge.

Must not: build, or touch the sandbox.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pygit2

from reconciler.demo.fakenixos import (
    FLAKE_FILE,
    FLAKE_SOURCE,
    KNOBS_FILE,
    Sandbox,
    knobs_document,
    render_knobs,
    with_knobs,
)

BRANCH = "main"
_AUTHOR = pygit2.Signature("pullnix demo", "demo@pullnix.invalid")


class DemoFleet:
    def __init__(self, bare: Path, sandbox: Sandbox, host: str, spec: str) -> None:
        self.bare = bare
        self.repo = pygit2.init_repository(
            str(bare), bare=True, initial_head=f"refs/heads/{BRANCH}"
        )
        self.knobs: dict[str, Any] = knobs_document(sandbox, hosts=(host,), version="1")
        self.spec = spec

    @property
    def url(self) -> str:
        return f"file://{self.bare}"

    def flake_ref(self, sha: str) -> str:
        return f"git+file://{self.bare}?ref={BRANCH}&rev={sha}"

    def commit(
        self,
        message: str,
        *,
        branch: str = BRANCH,
        merge: str | None = None,
        extra: Mapping[str, bytes] | None = None,
        **knobs: Any,
    ) -> str:
        """Commit the fleet with `knobs` changed (they accumulate) on `branch` (a new branch
        starts from main), `merge` as a second parent, `extra` files added; its SHA."""
        self.knobs = with_knobs(self.knobs, **knobs)
        files = {
            FLAKE_FILE: FLAKE_SOURCE.read_bytes(),
            KNOBS_FILE: render_knobs(self.knobs).encode(),
            "pullnix.yaml": self.spec.encode(),
            **(extra or {}),
        }
        return self._commit(files, message, branch, merge)

    def _commit(
        self, files: Mapping[str, bytes], message: str, branch: str, merge: str | None
    ) -> str:
        builder = self.repo.TreeBuilder()
        for name, data in sorted(files.items()):
            builder.insert(name, self.repo.create_blob(data), pygit2.GIT_FILEMODE_BLOB)
        tree = builder.write()
        refs = self.repo.references
        ref = f"refs/heads/{branch}"
        base = ref if ref in refs else f"refs/heads/{BRANCH}"
        parents = [refs[base].target] if base in refs else []
        parents += [pygit2.Oid(hex=merge)] if merge else []
        oid = self.repo.create_commit(None, _AUTHOR, _AUTHOR, message + "\n", tree, parents)
        refs.create(ref, oid, force=True)
        return str(oid)
