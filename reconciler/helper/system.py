"""What the helper does to the machine: activation, the system profile, store paths.

Owns the subprocesses that change the system (`switch-to-configuration`,
`nix-env -p PROFILE --set|--switch-generation|--delete-generations`) and the reading of the links
that say what is running (`current_system`, the profile). Every function is
idempotent where a restart could repeat it: setting a profile to where it
already points is a no-op.

Must not: decide what to do next (that is `machine.py`) or write the journal.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from reconciler.common.child import ChildTimeout, run_bounded
from reconciler.common.output import LOG_LIMIT, CappedLog, cut_log, shorten
from reconciler.common.protocol import STORE_DIR, ErrorCode, ProtocolError
from reconciler.helper import transient

_GENERATION_LINK = re.compile(r"^(?P<name>.+)-(?P<n>[0-9]+)-link$")


class StepFailed(Exception):
    """A step on the machine failed; the message says which command and why."""


@dataclass(frozen=True)
class ProfileState:
    path: str | None
    generation: int | None


def resolve(link: Path) -> str | None:
    """The store path a link finally points at, or None when it does not exist."""
    try:
        return os.path.realpath(link, strict=True)
    except OSError:
        return None


def profile_state(profile: Path) -> ProfileState:
    try:
        target = os.readlink(profile)
    except OSError:
        return ProfileState(None, None)
    m = _GENERATION_LINK.match(os.path.basename(target))
    return ProfileState(resolve(profile), int(m["n"]) if m else None)


def generation_path(profile: Path, generation: int) -> str | None:
    return resolve(profile.with_name(f"{profile.name}-{generation}-link"))


def generations(profile: Path) -> list[int]:
    prefix = profile.name + "-"
    try:
        names = os.listdir(profile.parent)
    except OSError:
        return []
    out = []
    for name in names:
        m = _GENERATION_LINK.match(name)
        if name.startswith(prefix) and m and m["name"] == profile.name:
            out.append(int(m["n"]))
    return sorted(out)


def check_store_path(path: str, needs: str) -> str:
    """Resolve a syntactically valid store path and check it is a real one holding `needs`.

    A symlink in the store that leads outside it is refused, so is a path whose
    `needs` (e.g. `bin/switch-to-configuration`) is missing or not executable.
    """
    real = resolve(Path(path))
    if real is None:
        raise ProtocolError(ErrorCode.BAD_STORE_PATH, f"{path}: does not exist")
    if os.path.dirname(real) != STORE_DIR:
        raise ProtocolError(
            ErrorCode.BAD_STORE_PATH, f"{path}: resolves to {real}, which is not a store path"
        )
    target = resolve(Path(real) / needs)
    if (
        target is None
        or not target.startswith(STORE_DIR + "/")
        or not os.path.isfile(target)
        or not os.access(target, os.X_OK)
    ):
        raise ProtocolError(
            ErrorCode.BAD_STORE_PATH, f"{path}: has no executable {needs} inside {STORE_DIR}"
        )
    return real


def switch(store_path: str, action: str, log: Path, timeout: float, owner: str = "") -> None:
    """`STORE/bin/switch-to-configuration ACTION`, its output appended to `log`: under
    systemd in the transient unit nixos-rebuild uses (`transient`), else as a child."""
    if not transient.available():
        run([f"{store_path}/bin/switch-to-configuration", action], log, timeout)
        return
    try:
        transient.switch(store_path, action, log, timeout, owner)
    except transient.ActivationFailed as exc:
        raise StepFailed(str(exc)) from None
    finally:
        cut_log(log, LOG_LIMIT)


def set_profile(profile: Path, store_path: str, generation: int | None, log: Path) -> int | None:
    """Point `profile` at `store_path` (at `generation` if given); the generation after."""
    state = profile_state(profile)
    if state.path == store_path and (generation is None or state.generation == generation):
        return state.generation
    profile.parent.mkdir(parents=True, exist_ok=True)
    if generation is not None and generation_path(profile, generation) == store_path:
        run(["nix-env", "-p", str(profile), "--switch-generation", str(generation)], log, 120)
    else:
        run(["nix-env", "-p", str(profile), "--set", store_path], log, 120)
    after = profile_state(profile)
    if after.path != store_path:
        raise StepFailed(f"{profile} points at {after.path} after nix-env, not {store_path}")
    return after.generation


def delete_generations(profile: Path, numbers: Sequence[int], log: Path) -> None:
    """`nix-env -p PROFILE --delete-generations N...`; deleting an absent one is harmless."""
    if numbers:
        run(["nix-env", "-p", str(profile), "--delete-generations", *map(str, numbers)], log, 300)


def run(argv: list[str], log: Path, timeout: float) -> None:
    """Run `argv` in its own session, its output to `log` (capped at LOG_LIMIT; a log
    that cannot be written, on a full disk, is skipped); raise StepFailed on failure
    with a short message (the last line of the output)."""
    sink = CappedLog.open(log, LOG_LIMIT)
    shown = shorten(" ".join(argv), 300)
    sink.note(f"$ {shorten(' '.join(argv), 4000)}\n".encode())
    try:
        done = run_bounded(argv, timeout=timeout, log=sink)
        sink.note(f"[exit {done.returncode}]\n".encode())
    except ChildTimeout:
        sink.note(f"[killed after {timeout:g}s]\n".encode())
        raise StepFailed(f"{shown}: still running after {timeout:g}s; killed") from None
    except OSError as exc:
        raise StepFailed(f"{shorten(argv[0], 300)}: cannot run: {exc.strerror}") from None
    finally:
        sink.close()
    if done.returncode != 0:
        raise StepFailed(
            f"{shown} exited {done.returncode}" + (f": {done.message}" if done.message else "")
        )
