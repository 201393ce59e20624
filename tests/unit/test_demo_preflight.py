"""The demo's preflight as a table: each machine state gets the verdict that says what is wrong."""

from __future__ import annotations

import pytest

from reconciler.demo.preflight import CreateStore, Facts, Problem, Ready, Store, Verdict, diagnose

W, RO, MISSING = Store.WRITABLE, Store.READ_ONLY, Store.MISSING


def facts(nix: bool = True, root: bool = True, store: Store = W, missing: str = "") -> Facts:
    return Facts(nix, root, store, "/nix/store", tuple(missing.split()) if missing else ())


CASES: list[tuple[str, Facts, type, str]] = [
    ("root with a store", facts(), Ready, ""),
    ("a user who owns a writable store", facts(root=False), Ready, ""),
    # Debian's nix-bin right after apt-get install: no store until Nix first runs.
    ("root on a Nix that never ran", facts(store=MISSING), CreateStore, ""),
    ("no Nix at all", facts(nix=False, store=MISSING), Problem, "Nix is not installed"),
    ("no Nix, not root", facts(nix=False, root=False), Problem, "apt-get install nix-bin"),
    (
        "not root on a Nix that never ran",
        facts(root=False, store=MISSING),
        Problem,
        "there is no Nix store yet (/nix/store does not exist",
    ),
    ("not root, root's store", facts(root=False, store=RO), Problem, "run the demo as root"),
    ("root, a read-only store", facts(store=RO), Problem, "even as root"),
    ("no pullnix-helper", facts(missing="pullnix-helper"), Problem, "`pullnix-helper` program"),
]


@pytest.mark.parametrize(
    ("given", "kind", "says"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_each_machine_state_gets_the_verdict_that_names_its_problem(
    given: Facts, kind: type, says: str
) -> None:
    verdict: Verdict = diagnose(given)
    assert type(verdict) is kind
    if isinstance(verdict, Problem):
        assert says in verdict.message
