"""The Nix half of `pullnix publish`: list a flake's hosts, build, measure, sign and copy.

Owns the Nix commands CI runs for prebuilt systems: `nix eval` of the
flake's `nixosConfigurations` names, `nix build` of one host's toplevel at
an exact commit (`git+file://DIR?rev=SHA`, the same pinning the agent uses),
`nix path-info -S` for the closure's size, `nix store sign -r` with a signing
key (every path of the closure, so a machine with `require-sigs` accepts
each), and `nix copy --to STORE_URL` (any store URL Nix knows: file://,
s3://, ssh-ng://, http(s):// with an upload endpoint). Failures are the
driver's typed errors, with Nix's own summary.

Must not: decide which hosts to publish, write the lock, or print progress
(that is the command's, `reconciler.cli.publish`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from reconciler.nix.build import BuildSettings, toplevel_attr
from reconciler.nix.errors import EvaluationError, NixCommandFailed, first_error, with_tail
from reconciler.nix.process import FEATURES, LineCallback, run_nix


@dataclass(frozen=True)
class Sizes:
    nar: int  # the toplevel's own NAR
    closure: int  # the toplevel and everything it references


def flake_url(directory: Path, ref: str, revision: str) -> str:
    """The flake in `directory`'s git repository at exactly `revision` (found on `ref`)."""
    where = quote(str(directory.resolve()))
    return f"git+file://{where}?ref={quote(ref, safe='/')}&rev={revision}"


def flake_hosts(flake: str, settings: BuildSettings) -> list[str]:
    """The names under the flake's `nixosConfigurations`, sorted."""
    argv = ["nix", *FEATURES, "eval", "--json", f"{flake}#nixosConfigurations"]
    run = run_nix(
        [*argv, "--apply", "builtins.attrNames"], timeout=settings.timeout, env=settings.env()
    )
    if not run.ok:
        raise EvaluationError(
            with_tail(
                f"listing nixosConfigurations of {flake} failed: {first_error(run.tail)}", run.tail
            )
        )
    names = json.loads(run.stdout)
    return sorted(str(n) for n in names)


def build_host(
    flake: str,
    template: str,
    host: str,
    settings: BuildSettings,
    on_line: LineCallback | None = None,
) -> str:
    """Build `host`'s toplevel from `flake`; its store path, held by a GC root in
    `settings.gcroots_dir` until the caller removes that directory."""
    installable = f"{flake}#{toplevel_attr(template, host)}"
    root = settings.gcroots_dir / f"publish-{host}"
    argv = ["nix", *FEATURES, "build", "--json", "--out-link", str(root), *settings.extra_args]
    argv.append(installable)
    run = run_nix(argv, timeout=settings.timeout, on_line=on_line, env=settings.env())
    if not run.ok:
        raise NixCommandFailed(
            with_tail(
                f"building {toplevel_attr(template, host)} failed: {first_error(run.tail)}",
                run.tail,
            )
        )
    return str(json.loads(run.stdout)[0]["outputs"]["out"])


def sizes(store_path: str, settings: BuildSettings) -> Sizes:
    """The toplevel's NAR size and its closure size, in bytes."""
    argv = ["nix", *FEATURES, "path-info", "--json", "--closure-size", store_path]
    run = run_nix(argv, timeout=settings.timeout, env=settings.env())
    if not run.ok:
        raise NixCommandFailed(f"nix path-info {store_path} failed: {first_error(run.tail)}")
    (info,) = json.loads(run.stdout)
    return Sizes(int(info["narSize"]), int(info["closureSize"]))


def sign_closure(store_path: str, key_file: Path, settings: BuildSettings) -> None:
    """Sign every path of the closure with the secret key in `key_file`."""
    argv = ["nix", *FEATURES, "store", "sign", "--recursive", "--key-file", str(key_file)]
    run = run_nix([*argv, store_path], timeout=settings.timeout, env=settings.env())
    if not run.ok:
        raise NixCommandFailed(
            f"signing the closure of {store_path} with {key_file} failed: {first_error(run.tail)}"
        )


def copy_closure(store_path: str, to: str, settings: BuildSettings) -> None:
    """Copy the closure (with its signatures) to the store at URL `to`."""
    argv = ["nix", *FEATURES, "copy", "--to", to, store_path]
    run = run_nix(argv, timeout=settings.timeout, env=settings.env())
    if not run.ok:
        raise NixCommandFailed(f"copying {store_path} to {to} failed: {first_error(run.tail)}")
