"""The retention policy keeps the newest generations and never the protected ones."""

from __future__ import annotations

import pytest

from reconciler.helper.retention import plan_retention


def gens(*numbers: int) -> list[tuple[int, str]]:
    return [(n, f"/nix/store/{n:032d}-nixos-system-{n}") for n in numbers]


def path(n: int) -> str:
    return f"/nix/store/{n:032d}-nixos-system-{n}"


@pytest.mark.parametrize(
    ("generations", "keep", "current", "booted", "running", "pinned", "delete"),
    [
        # nothing to do
        (gens(), 3, None, None, None, (), ()),
        (gens(1, 2, 3), 3, 3, None, None, (), ()),
        (gens(1, 2, 3), 5, 3, None, None, (), ()),
        # the newest `keep` stay
        (gens(1, 2, 3, 4, 5), 2, 5, None, None, (), (1, 2, 3)),
        (gens(1, 2, 3, 4, 5), 1, 5, None, None, (), (1, 2, 3, 4)),
        # gaps in numbering (earlier deletions) do not matter
        (gens(2, 7, 9, 12), 2, 12, None, None, (), (2, 7)),
        # the current generation is kept even when it is not among the newest (a rollback)
        (gens(1, 2, 3, 4, 5), 2, 2, None, None, (), (1, 3)),
        # the booted system's generation is kept
        (gens(1, 2, 3, 4, 5), 2, 5, path(1), None, (), (2, 3)),
        # the running system's generation is kept (during a trial it is not the profile's)
        (gens(1, 2, 3, 4, 5), 2, 5, path(1), path(3), (), (2,)),
        # pinned generations are kept
        (gens(1, 2, 3, 4, 5), 1, 5, None, None, (2, 3), (1, 4)),
        # booted, current and pinned all at once; keep=1
        (gens(1, 2, 3, 4, 5, 6), 1, 4, path(2), None, (1,), (3, 5)),
        # a booted path outside the profile protects nothing and breaks nothing
        (gens(1, 2, 3), 1, 3, "/nix/store/elsewhere", None, (), (1, 2)),
    ],
)
def test_plan_deletes_exactly_the_unprotected_old_generations(
    generations: list[tuple[int, str]],
    keep: int,
    current: int | None,
    booted: str | None,
    running: str | None,
    pinned: tuple[int, ...],
    delete: tuple[int, ...],
) -> None:
    plan = plan_retention(
        generations, keep, current=current, booted=booted, running=running, pinned=pinned
    )
    assert plan.delete == delete
    assert sorted(plan.delete + plan.keep) == sorted(n for n, _ in generations)


def test_booted_path_in_several_generations_protects_only_the_newest_of_them() -> None:
    same = "/nix/store/" + "a" * 32 + "-nixos-system"
    generations = [(1, same), (2, same), (3, path(3)), (4, path(4))]
    plan = plan_retention(generations, 1, current=4, booted=same)
    assert plan.delete == (1, 3)
    assert plan.protected == ((2, "booted"),)


def test_protected_generations_say_why() -> None:
    plan = plan_retention(gens(1, 2, 3, 4), 1, current=4, booted=path(1), pinned=(2,))
    assert plan.protected == ((1, "booted"), (2, "pinned"))
    assert plan.keep == (1, 2, 4)


def test_keep_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        plan_retention(gens(1), 0, current=1)
