"""The source tip in the helper's apply request: optional, journaled, backward compatible.

Downgrade protection needs the branch tip that carried a deployed revision (a
`spec.revision` pin may deploy a commit off the branch); the apply request can
carry it as `sourceRevision` so the helper's record of committed generations
can keep it past the loss of the agent's state dir.
"""

from __future__ import annotations

import pytest

from reconciler.common import protocol as p

STORE = "/nix/store/" + "a" * 32 + "-nixos-system-edge-01-2"
PINNED = "b" * 40
TIP = "c" * 40


def test_an_apply_request_carries_the_tip_that_asked_for_its_revision() -> None:
    req = p.parse_request(
        {"v": 1, "op": "apply", "storePath": STORE, "revision": PINNED, "sourceRevision": TIP}
    )
    assert isinstance(req, p.ApplyRequest)
    assert (req.revision, req.source_revision) == (PINNED, TIP)
    wire = p.apply_to_wire(req)
    assert wire["sourceRevision"] == TIP
    assert p.apply_from_wire(wire) == req


def test_without_a_source_tip_the_request_and_its_journal_form_are_as_before() -> None:
    req = p.parse_request({"v": 1, "op": "apply", "storePath": STORE, "revision": PINNED})
    assert isinstance(req, p.ApplyRequest)
    assert req.source_revision == ""
    wire = p.apply_to_wire(req)
    assert "sourceRevision" not in wire
    assert p.apply_from_wire(wire) == req


def test_a_source_tip_that_is_not_a_string_is_refused() -> None:
    with pytest.raises(p.ProtocolError) as err:
        p.parse_request({"v": 1, "op": "apply", "storePath": STORE, "sourceRevision": 7})
    assert err.value.code == p.ErrorCode.BAD_FIELD
    assert "sourceRevision" in str(err.value)
