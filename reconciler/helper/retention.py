"""Which system generations to delete after a commit: the retention policy, as a pure function.

Owns the rule: keep the newest `keep` (`[system] keep_generations`)
generations of the system profile, and never delete the profile's current
generation, the generation of the booted system, the generation of the
running system, or a pinned one (protected generations are kept on top of
the `keep` newest). Takes values, returns values; standard library only.

Why it lives in the helper: the system profile belongs to root (on NixOS
`/nix/var/nix/profiles` is root's, mode 0755), so the agent, which runs
unprivileged where it can, cannot delete `system-<N>-link`s; the helper,
which runs as root and is the only process that moves the profile, can. It
prunes right after it commits a generation (`operator.py`), before it
reports the operation over, so pruning never races a profile move, and a
failure to prune is noted in the operation's message but never undoes the
commit. At that moment the generation just committed is current and holds
the agent's lastAppliedRevision (also when `spec.revision` pins an older
commit: the pin is what was just applied), so it is the pinned one.
Must not: touch the file system or run Nix (`system.delete_generations` does).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class RetentionPlan:
    """The verdict: generation numbers to delete and to keep, each ascending, and why kept."""

    delete: tuple[int, ...]
    keep: tuple[int, ...]
    protected: tuple[tuple[int, str], ...]  # (generation, why) for those kept despite age


def plan_retention(
    generations: Sequence[tuple[int, str]],
    keep: int,
    *,
    current: int | None,
    booted: str | None = None,
    running: str | None = None,
    pinned: Collection[int] = (),
) -> RetentionPlan:
    """Plan which of `generations` ((number, store path) pairs) to delete.

    `current` is the profile's current generation number; `booted` and
    `running` are store paths (the newest generation pointing at each is
    protected); `pinned` are generation numbers that must stay.
    """
    if keep < 1:
        raise ValueError(f"keep must be at least 1, not {keep}")
    numbers = sorted({n for n, _ in generations})
    newest = set(numbers[-keep:])
    reasons: dict[int, str] = {}
    if current is not None:
        reasons[current] = "current"
    for path, why in ((booted, "booted"), (running, "running")):
        match = _newest_with_path(generations, path)
        if match is not None:
            reasons.setdefault(match, why)
    for number in pinned:
        reasons.setdefault(number, "pinned")
    kept = tuple(n for n in numbers if n in newest or n in reasons)
    return RetentionPlan(
        delete=tuple(n for n in numbers if n not in newest and n not in reasons),
        keep=kept,
        protected=tuple((n, reasons[n]) for n in kept if n not in newest),
    )


def _newest_with_path(generations: Sequence[tuple[int, str]], path: str | None) -> int | None:
    if path is None:
        return None
    matches = [n for n, p in generations if p == path]
    return max(matches) if matches else None
