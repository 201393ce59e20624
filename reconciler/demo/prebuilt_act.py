"""Act 4 of `pullnix demo`: CI publishes a signed system; the machine fetches, evaluates nothing.

Owns the demo's prebuilt story (DESIGN.md, "Prebuilt systems"): a signing
key pair made by `nix-store --generate-binary-cache-key` (its public half in
the machine's agent.toml, written at act 0), a binary cache in the sandbox
(`file://`, which Nix checks exactly as it checks an HTTP cache), "CI"
running the real `pullnix publish` on a commit of a branch the machine does
not follow, and a deploy commit on the followed branch that merges it and
carries `pullnix.yaml` with `configuration.prebuilt` and the lock. The built
system is removed from the local store first, as on a device that never
built it; the machine then fetches it, checks the signature, and deploys.

Must not: act outside the sandbox, or delete any store path but the one the
act itself published.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from reconciler.demo.progress import Progress
from reconciler.demo.stage import DemoFailed, Stage, program
from reconciler.demo.watch import follow

KEY_NAME = "demo-ci-1"
LOCK = "pullnix.lock.json"


def cache_dir(root: Path) -> Path:
    return root / "binary-cache"


def make_key(root: Path) -> str:
    """CI's signing key pair under `root/keys`; the public key (name:base64)."""
    keys = root / "keys"
    keys.mkdir(parents=True, exist_ok=True)
    secret, public = keys / f"{KEY_NAME}.secret", keys / f"{KEY_NAME}.public"
    done = subprocess.run(
        ["nix-store", "--generate-binary-cache-key", KEY_NAME, str(secret), str(public)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise DemoFailed(f"nix-store --generate-binary-cache-key failed: {done.stderr}")
    return public.read_text().strip()


def nix_section(root: Path, public_key: str) -> str:
    """agent.toml's [nix]: the sandbox's cache and CI's key, the machine's trust roots."""
    return (
        "\n[nix]\n"
        f"substituters = [{json.dumps(f'file://{cache_dir(root)}')}]\n"
        f"trusted_public_keys = [{json.dumps(public_key)}]\n"
    )


def act(stage: Stage, progress: Progress, host: str) -> None:
    fleet, root = stage.fleet, stage.root
    progress.act("Act 4: CI builds and signs; the machine only fetches (a prebuilt system)")
    ci = fleet.commit(
        "fleet: version 4 (on main of CI; machines do not follow it)",
        version="4",
        health="ok",
        branch="ci",
    )
    progress.event("git", f"CI's commit {ci[:12]} on branch ci (fake NixOS version 4)")
    found = program("pullnix")
    assert found is not None  # the story's preflight checked
    lock_path = root / "ci" / LOCK
    lock_path.parent.mkdir(exist_ok=True)
    progress.say(
        f"$ pullnix publish --flake {fleet.bare} --revision {ci[:12]} "
        f"--sign-key keys/{KEY_NAME}.secret --to file://{cache_dir(root)}"
    )
    argv = [found, "publish", "--flake", str(fleet.bare), "--revision", ci]
    argv += ["--sign-key", str(root / "keys" / f"{KEY_NAME}.secret")]
    argv += ["--to", f"file://{cache_dir(root)}", "--lock-file", str(lock_path)]
    done = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    progress.say(done.stderr.rstrip())
    if done.returncode != 0:
        raise DemoFailed(f"pullnix publish exited {done.returncode}")
    lock = json.loads(lock_path.read_text())
    system = lock["hosts"][host]["storePath"]
    _delete(system)
    progress.event("demo", f"removed {system} from this store, as on a device that never built it")
    spec = fleet.spec.replace(
        'flake: "nixosConfigurations.{host}"', f"prebuilt: {{lockFile: {LOCK}}}"
    )
    fleet.spec = spec
    deploy = fleet.commit(
        "deploy: version 4, prebuilt by CI", merge=ci, extra={LOCK: lock_path.read_bytes()}
    )
    progress.event("git", f"pushed {deploy[:12]}: pullnix.yaml says prebuilt, with the lock")
    follow(
        stage,
        progress,
        f"the machine to fetch and converge on {deploy[:12]}",
        lambda s: s.get("lastAppliedRevision") == deploy,
    )
    running = os.readlink(stage.sandbox.current_system)
    if running != system:
        raise DemoFailed(f"the machine runs {running}, not the published {system}")
    narinfo = cache_dir(root) / (Path(system).name.split("-", 1)[0] + ".narinfo")
    signer = next(
        (
            line.split()[1].split(":")[0]
            for line in narinfo.read_text().splitlines()
            if line.startswith("Sig:")
        ),
        "nobody",
    )
    progress.event(
        "demo", f"running {running}: fetched, signed by {signer}, nothing evaluated", "ok"
    )


def _delete(store_path: str) -> None:
    subprocess.run(
        ["nix-store", "--delete", store_path], capture_output=True, timeout=120, check=False
    )
    if os.path.exists(store_path):
        raise DemoFailed(f"could not remove {store_path} from the store")
