"""`pullnix publish`: CI builds every host's system, signs it, copies it, writes the lock.

Owns the command the fleet repository's CI runs for `configuration.prebuilt`
(docs/prebuilt.md): validate `pullnix.yaml` first, take one
commit of the repository (HEAD unless `--revision`), enumerate the flake's
`nixosConfigurations` (filtered by `--hosts GLOB`), and for each host build
its toplevel at that commit, sign the closure with `--sign-key`, copy it to
`--to STORE_URL`, and report one progress line per step with sizes. The
SystemLock file is written (atomically) only when every host was published;
exit 1 names the hosts that failed. `--json` prints the result as one
document on stdout; progress goes to stderr either way.

Must not: commit or push anything (CI does, signed with its own key), or
deploy: machines fetch what is published when their branch carries the lock.
"""

from __future__ import annotations

import fnmatch
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import click
import pygit2

from reconciler.api import SpecError, for_host, load_spec_file, load_spec_text
from reconciler.common.atomic import write_atomic
from reconciler.common.clock import utc_stamp
from reconciler.core.errors import PullnixError
from reconciler.core.lock import LockedHost, render_lock
from reconciler.core.model import NixOSDeployment, Prebuilt
from reconciler.nix.build import BuildSettings
from reconciler.nix.publish import (
    build_host,
    copy_closure,
    flake_hosts,
    flake_url,
    sign_closure,
    sizes,
)

#: The lock's name when the spec has no `prebuilt` (the CRD's default for lockFile).
DEFAULT_LOCK = Prebuilt().lock_file


@click.command()
@click.option(
    "--flake",
    "directory",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=Path("."),
    show_default=True,
    help="The fleet repository (a git work tree or bare repository with flake.nix).",
)
@click.option("--revision", default="HEAD", show_default=True, help="The commit to build.")
@click.option(
    "--hosts",
    "globs",
    multiple=True,
    metavar="GLOB...",
    help="Only hosts matching these globs (repeat, or separate with spaces or commas).",
)
@click.option(
    "--sign-key",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    required=True,
    help="Nix signing key (nix-store --generate-binary-cache-key) for every path copied.",
)
@click.option(
    "--to", "to", required=True, metavar="STORE_URL", help="Where to copy: any nix copy store URL."
)
@click.option(
    "--lock-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write the lock [default: spec's prebuilt.lockFile, or pullnix.lock.json].",
)
@click.option(
    "--spec",
    "spec_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The desired state to validate first [default: pullnix.yaml in the commit].",
)
@click.option(
    "--attr",
    "template",
    default="nixosConfigurations.{host}",
    show_default=True,
    help="The flake attribute of a host's NixOS system.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
def publish(
    directory: Path,
    revision: str,
    globs: tuple[str, ...],
    sign_key: Path,
    to: str,
    lock_file: Path | None,
    spec_file: Path | None,
    template: str,
    as_json: bool,
) -> None:
    """Build, sign and copy every host's system for one commit; write the SystemLock."""
    repo, sha = _resolve(directory, revision)
    deployment = _validated(repo, sha, spec_file)
    flake = flake_url(directory, _ref_for(repo, revision, sha), sha)

    def lock_path(hosts: list[str]) -> Path:
        return lock_file or directory / _lock_name(deployment, hosts)

    with tempfile.TemporaryDirectory(prefix="pullnix-publish-") as roots:
        # Built systems are held by GC roots in `roots` until they are copied.
        _publish_all(
            directory, sha, flake, globs, sign_key, to, lock_path, template, as_json, Path(roots)
        )


def _publish_all(
    directory: Path,
    sha: str,
    flake: str,
    globs: tuple[str, ...],
    sign_key: Path,
    to: str,
    lock_for: Callable[[list[str]], Path],
    template: str,
    as_json: bool,
    roots: Path,
) -> None:
    settings = BuildSettings(gcroots_dir=roots)
    try:
        names = flake_hosts(flake, settings)
    except PullnixError as exc:
        _fail(f"{exc.reason}: {exc.message}")
    if not names:
        _fail(f"the flake at {sha[:12]} has no nixosConfigurations: nothing to publish")
    wanted = _select(names, globs)
    if not wanted:
        _fail(f"no host of {', '.join(names)} matches --hosts {' '.join(globs)}")
    lock_path = lock_for(wanted)
    _progress(f"publishing {len(wanted)} host(s) of {directory} at {sha[:12]} to {to}")
    published: dict[str, LockedHost] = {}
    report: dict[str, dict[str, Any]] = {}
    for host in wanted:
        try:
            _progress(f"{host}: building {template.replace('{host}', host)}")
            path = build_host(flake, template, host, settings)
            size = sizes(path, settings)
            _progress(f"{host}: built {path} (closure {_mib(size.closure)})")
            _progress(f"{host}: signing and copying to {to}")
            sign_closure(path, sign_key, settings)
            copy_closure(path, to, settings)
        except PullnixError as exc:
            first = exc.message.splitlines()[0]
            _progress(f"{host}: failed: {first}")
            report[host] = {"result": "failed", "reason": exc.reason, "message": exc.message}
            continue
        _progress(f"{host}: done {path} ({_mib(size.closure)} closure, {_mib(size.nar)} toplevel)")
        published[host] = LockedHost(path, size.closure)
        report[host] = {
            "result": "published",
            "storePath": path,
            "closureSize": size.closure,
            "narSize": size.nar,
        }
    failed = [h for h in wanted if h not in published]
    if not failed:
        created = utc_stamp()
        try:
            write_atomic(lock_path, render_lock(sha, created, published).encode())
        except OSError as exc:
            _fail(
                f"every host was published, but the lock could not be written to {lock_path}: "
                f"{exc.strerror or exc}; re-run with --lock-file FILE in a writable directory"
            )
        _progress(f"wrote {lock_path} ({len(published)} host(s), source {sha[:12]})")
    else:
        _progress(f"failed: {', '.join(failed)}; {lock_path} not written")
    if as_json:
        doc = {
            "sourceRevision": sha,
            "to": to,
            "lockFile": str(lock_path) if not failed else None,
            "hosts": report,
            "failed": failed,
        }
        click.echo(json.dumps(doc, indent=2))
    sys.exit(1 if failed else 0)


def _validated(repo: pygit2.Repository, sha: str, spec_file: Path | None) -> NixOSDeployment:
    """The desired state, validated as `pullnix validate` does: `spec_file`, else the
    commit's pullnix.yaml."""
    origin = str(spec_file) if spec_file else f"pullnix.yaml@{sha[:12]}"
    try:
        if spec_file is not None:
            return load_spec_file(spec_file)
        commit = repo.revparse_single(sha).peel(pygit2.Commit)
        try:
            blob = commit.tree["pullnix.yaml"]
        except KeyError:
            blob = None
        if not isinstance(blob, pygit2.Blob):
            _fail(f"commit {sha[:12]} has no pullnix.yaml; pass --spec FILE")
        return load_spec_text(bytes(blob.data), origin=origin)
    except SpecError as exc:
        for issue in exc.issues:
            click.echo(str(issue), err=True)
        _fail(f"{origin} is not valid; nothing was built")


def _lock_name(deployment: NixOSDeployment, hosts: list[str]) -> str:
    """The one lock file the published hosts read (`prebuilt.lockFile` as each host's
    overrides leave it; pullnix.lock.json without `prebuilt`). Hosts that read different
    files cannot share the lock this run writes: refused before anything is built."""
    wants: dict[str, list[str]] = {}
    for host in hosts:
        try:
            prebuilt = for_host(deployment, host).spec.configuration.prebuilt
        except SpecError as exc:
            for issue in exc.issues:
                click.echo(str(issue), err=True)
            _fail(f"the spec merged for host {host} is not valid; nothing was built")
        name = prebuilt.lock_file if prebuilt is not None else DEFAULT_LOCK
        wants.setdefault(name, []).append(host)
    if len(wants) > 1:
        groups = "; ".join(f"{name}: {', '.join(names)}" for name, names in wants.items())
        _fail(
            f"the hosts read different lock files ({groups}); one run writes one lock: "
            "publish each group on its own (--hosts ... --lock-file ...)"
        )
    return next(iter(wants))


def _resolve(directory: Path, revision: str) -> tuple[pygit2.Repository, str]:
    try:
        repo = pygit2.Repository(str(directory))
        return repo, str(repo.revparse_single(revision).peel(pygit2.Commit).id)
    except (pygit2.GitError, KeyError, ValueError) as exc:
        _fail(f"{directory}: cannot resolve {revision!r} to a commit: {exc}")


def _ref_for(repo: pygit2.Repository, revision: str, sha: str) -> str:
    """A ref whose history holds `sha`, for Nix's fetch (which looks for the commit on one
    ref): the one named, else a branch, else refs/pullnix/publish pointed at it."""
    refs = repo.references
    named = [n for n in (revision, f"refs/heads/{revision}") if n.startswith("refs/") and n in refs]
    branches = [n for n in refs if n.startswith("refs/heads/")]
    for name in [*named, *branches]:
        target = refs[name].resolve().target
        if str(target) == sha or repo.descendant_of(target, sha):
            return str(name)
    refs.create("refs/pullnix/publish", pygit2.Oid(hex=sha), force=True)
    return "refs/pullnix/publish"


def _select(names: list[str], globs: tuple[str, ...]) -> list[str]:
    patterns = [p for g in globs for p in g.replace(",", " ").split()]
    if not patterns:
        return names
    return [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]


def _mib(size: int) -> str:
    if size < 1048576:
        return f"{size / 1024:.1f} KiB"
    return f"{size / 1048576:.1f} MiB"


def _progress(line: str) -> None:
    click.echo(f"publish: {line}", err=True)


def _fail(message: str) -> NoReturn:
    click.echo(f"pullnix publish: {message}", err=True)
    sys.exit(1)


COMMANDS = [publish]
