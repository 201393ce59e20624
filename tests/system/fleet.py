"""The fleet repository the system tier's agent follows: a bare git repository in the
container's shared directory, served inside the container by `git daemon`.

Owns `shared/git/fleet.git` (written from the host with pygit2, no work tree): each
commit is a whole tree with the system tier's flake (`guest/flake.nix`), the files
its toplevel is made of (`guest/switch-to-configuration`, the git server's unit, and
the NixOS module's own `nix/units.nix`, `nix/render-config.nix` and what they import,
rendered to unit text by `guest/unit-text.nix`), the knobs that make one generation
differ from another (`knobs.json`) and the desired state (`pullnix.yaml`). The
machine builds each commit with its own Nix, except a prebuilt deploy: a commit
CI builds on the host is made beside main, and the commit on main that follows
it carries the lock `pullnix publish` wrote and a flake that throws when evaluated.

Must not: build anything, or write inside the container's root.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pygit2

from reconciler.demo.fakenixos import nix_system

HERE = Path(__file__).resolve().parent
MODULE = HERE.parents[1] / "nix"
BRANCH = "main"
GIT_URL = "git://127.0.0.1:9418/fleet.git"  # as agent.toml names it
SOURCES = {
    "flake.nix": HERE / "guest" / "flake.nix",
    "switch-to-configuration": HERE / "guest" / "switch-to-configuration",
    "unit-text.nix": HERE / "guest" / "unit-text.nix",
    "units/fleet-git-daemon.service": HERE / "units" / "fleet-git-daemon.service",
    **{
        f"nix/{name}": MODULE / name
        for name in ("units.nix", "paths.nix", "render-config.nix", "defaults.nix", "toml.nix")
    },
}
DEFAULT_KNOBS: dict[str, Any] = {
    "version": "1",
    "agent": "ok",  # "broken": exits 1 at start; "walled-off": runs, cannot reach the helper
    "gitListen": "127.0.0.1",  # where the git server listens; elsewhere cuts the machine off
    "agentUid": 399,  # services.pullnix.agentUid
    "switchDelay": 0,  # seconds switch-to-configuration waits before it acts
    "switchOutput": 0,  # MiB of output switch-to-configuration prints before it acts
    "kernel": "6.1",  # the generation's "kernel"; another one needs a reboot
    "helper": "",  # the helper's store path (services.pullnix.helperPackage); Fleet sets it
    "substituters": [],  # services.pullnix.binaryCache.substituters: agent.toml's [nix]
    "trustedPublicKeys": [],  # services.pullnix.binaryCache.trustedPublicKeys
}
LOCK = "pullnix.lock.json"
# The flake a prebuilt deploy commit carries: evaluating it on the machine is a failure.
UNEVALUABLE_FLAKE = """\
{
  description = "evaluating this in the container is a test failure";
  outputs = { self }: throw "pullnix-test: this flake was evaluated in the container";
}
"""
HEALTH_CHECKS = """\
    - name: git
      gitRemote: {}
      retries: 2
      interval: 1s
    - name: agent
      systemd: {units: ["pullnix-agent.service"]}
"""
# A check that holds the trial in Verifying until the test creates the file (or 10 min).
HELD_CHECK = """\
    - name: held
      command: {argv: ["/bin/sh", "-c", "while [ ! -e /run/release-check ]; do sleep 0.1; done"]}
      timeout: 10m
      retries: 0
"""
_AUTHOR = pygit2.Signature("pullnix system tier", "system@pullnix.invalid")


def spec_yaml(
    *,
    held: bool = False,
    confirm_timeout: str = "60s",
    reboot_window: tuple[str, str] | None = None,
    prebuilt: bool = False,
) -> str:
    configuration = (
        f"prebuilt: {{lockFile: {LOCK}}}" if prebuilt else 'flake: "nixosConfigurations.{host}"'
    )
    reboot = (
        f'  reboot: {{policy: ifNeeded, window: {{start: "{reboot_window[0]}", '
        f'end: "{reboot_window[1]}"}}}}\n'
        if reboot_window
        else ""
    )
    return (
        "apiVersion: pullnix.dev/v1alpha1\n"
        "kind: NixOSDeployment\n"
        "metadata:\n  name: fleet\n"
        "spec:\n"
        f"  configuration:\n    {configuration}\n"
        "  strategy: {action: switch, trial: true}\n"
        "  healthChecks:\n"
        + HEALTH_CHECKS
        + (HELD_CHECK if held else "")
        + f"  rollback: {{automatic: true, confirmTimeout: {confirm_timeout}}}\n"
        + reboot
    )


class Fleet:
    """`shared/git/fleet.git` under a container's shared directory."""

    def __init__(self, shared: Path, host: str, helper: str) -> None:
        self.bare = shared / "git" / "fleet.git"
        self.bare.parent.mkdir(parents=True, exist_ok=True)
        self.repo = pygit2.init_repository(
            str(self.bare), bare=True, initial_head=f"refs/heads/{BRANCH}"
        )
        self.host = host
        self.knobs: dict[str, Any] = {
            **DEFAULT_KNOBS,
            "host": host,
            "system": nix_system(),
            "helper": helper,
        }

    def guest_url(self, guest_shared: str) -> str:
        """The repository as a `git+file` flake reference inside the container."""
        return f"git+file://{guest_shared}/git/fleet.git?ref={BRANCH}"

    def commit(
        self,
        message: str,
        *,
        held: bool = False,
        confirm_timeout: str = "60s",
        reboot_window: tuple[str, str] | None = None,
        prebuilt: bool = False,
        on_main: bool = True,
        **knobs: Any,
    ) -> str:
        """A commit on main with `knobs` changed (they accumulate); its SHA. With `prebuilt`
        its pullnix.yaml says `configuration.prebuilt` (the lock is `deploy_lock`'s); with
        `on_main=False` main does not move: the commit is CI's to build (its parent is
        main's tip), and only `deploy_lock` puts it on main."""
        unknown = set(knobs) - set(DEFAULT_KNOBS)
        if unknown:
            raise TypeError(f"unknown knobs {sorted(unknown)}; known: {sorted(DEFAULT_KNOBS)}")
        self.knobs.update(knobs)
        files = {name: path.read_bytes() for name, path in SOURCES.items()}
        files["knobs.json"] = (json.dumps(self.knobs, indent=2, sort_keys=True) + "\n").encode()
        files["pullnix.yaml"] = spec_yaml(
            held=held,
            confirm_timeout=confirm_timeout,
            reboot_window=reboot_window,
            prebuilt=prebuilt,
        ).encode()
        return self._commit(files, message, on_main=on_main)

    def deploy_lock(self, source: str, lock: str, message: str) -> str:
        """The deploy commit on main: `source`'s tree (CI built it; it becomes the parent)
        plus the lock, with a flake.nix that throws when evaluated; its SHA."""
        tree = self.repo.revparse_single(source).peel(pygit2.Tree)
        files = _files(self.repo, tree)
        files[LOCK] = lock.encode()
        files["flake.nix"] = UNEVALUABLE_FLAKE.encode()
        return self._commit(files, message, parents=[pygit2.Oid(hex=source)])

    def _commit(
        self,
        files: dict[str, bytes],
        message: str,
        *,
        on_main: bool = True,
        parents: list[pygit2.Oid] | None = None,
    ) -> str:
        root = self.repo.TreeBuilder()
        subtrees: dict[str, pygit2.TreeBuilder] = {}
        for name, data in sorted(files.items()):
            blob = self.repo.create_blob(data)
            mode = (
                pygit2.GIT_FILEMODE_BLOB_EXECUTABLE
                if name == "switch-to-configuration"
                else pygit2.GIT_FILEMODE_BLOB
            )
            directory, _, base = name.rpartition("/")
            builder = (
                root if not directory else subtrees.setdefault(directory, self.repo.TreeBuilder())
            )
            builder.insert(base, blob, mode)
        for directory, builder in subtrees.items():
            root.insert(directory, builder.write(), pygit2.GIT_FILEMODE_TREE)
        ref = f"refs/heads/{BRANCH}"
        if parents is None:
            parents = [self.repo.references[ref].target] if ref in self.repo.references else []
        tree = root.write()
        oid = self.repo.create_commit(None, _AUTHOR, _AUTHOR, message + "\n", tree, parents)
        if on_main:
            self.repo.references.create(ref, oid, force=True)
        return str(oid)


def _files(repo: pygit2.Repository, tree: pygit2.Tree, prefix: str = "") -> dict[str, bytes]:
    """Every file of `tree`, by its path (one level of directories, as `_commit` writes)."""
    found: dict[str, bytes] = {}
    for entry in tree:
        obj = repo[entry.id]
        if isinstance(obj, pygit2.Tree):
            found.update(_files(repo, obj, f"{prefix}{entry.name}/"))
        elif isinstance(obj, pygit2.Blob):
            found[f"{prefix}{entry.name}"] = bytes(obj.data)
    return found
