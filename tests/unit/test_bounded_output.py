"""Bounds on what others wrote: child output, exception text, and whether status is vouched for.

Tables over the pure pieces: `Tail` keeps only its last bytes, `short_message`
and `shorten` make one short, escaped line of anything, `CappedLog` stops at
its cap and survives a failing file, `core.vouch.doubt` says when status.json
cannot be trusted, and `failed_status` turns an unforeseen error into
`Ready=False` without losing the rest of the document.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

import pytest

from reconciler.common.output import MESSAGE_LIMIT, CappedLog, Tail, last_lines, short_message
from reconciler.controller.failed_pass import failed_status, internal_error
from reconciler.core.vouch import STALE_GRACE, doubt


def test_a_tail_keeps_only_its_last_bytes() -> None:
    tail = Tail(limit=10)
    for chunk in (b"x" * 1000, b"0123456789abc"):
        tail.feed(chunk)
    assert (tail.data, tail.total, tail.dropped) == (b"3456789abc", 1013, 1003)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", ""),
        (b"one\ntwo\n\n", "two"),
        (b"bad \x1b[31mred\x1b[0m\n", "bad \\x1b[31mred\\x1b[0m"),
        ("tab\there", "tab\\there"),
        (b"\xff\xfe broken utf-8", "\ufffd\ufffd broken utf-8"),
    ],
)
def test_a_short_message_is_the_last_line_escaped(data: bytes | str, expected: str) -> None:
    assert short_message(data) == expected


def test_a_flood_on_one_line_becomes_a_short_message_with_both_ends() -> None:
    message = short_message(b"start" + b"x" * 20_000_000 + b"end")
    assert len(message) <= MESSAGE_LIMIT
    assert message.startswith("start")
    assert message.endswith("end")
    assert " ... " in message


def test_last_lines_are_each_short() -> None:
    assert last_lines(b"a\n" + b"b" * 5000 + b"\nc\n", 2, limit=20) == [
        "bbbbbbb ... bbbbbbbb",
        "c",
    ]


def test_a_capped_log_stops_at_its_cap_and_says_so_once() -> None:
    sink = io.BytesIO()
    log = CappedLog(sink, cap=8)
    log.write(b"12345")
    log.write(b"67890")
    log.write(b"more")
    sink_value = sink.getvalue()
    log.sink = None  # keep the BytesIO open to read it
    assert sink_value == b"12345678\n[log truncated]\n"
    assert log.dropped == 6


class FullDisk(io.RawIOBase):
    def writable(self) -> bool:
        return True

    def write(self, _data: Any) -> int:
        raise OSError(28, "No space left on device")


def test_a_capped_log_on_a_full_disk_carries_on_without_a_log() -> None:
    log = CappedLog(FullDisk(), cap=100)  # type: ignore[arg-type]
    log.write(b"x")
    log.write(b"y")
    log.close()
    assert log.sink is None


NOW = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("last_pass_at", "agent", "says"),
    [
        ("2026-12-01T11:59:00Z", None, None),
        ("2026-12-01T11:59:00Z", {"error": False, "reason": "Converged"}, None),
        ("2026-12-01T11:59:00Z", {"error": True, "reason": "InternalError", "message": "ENOSPC"},
         "the running agent's last pass failed (InternalError: ENOSPC)"),
        ("2026-12-01T10:00:00Z", None, "the last pass ran 7200s ago"),
        (None, None, "does not say when"),
        ("yesterday", None, "unreadable lastPassAt"),
    ],
)  # fmt: skip
def test_status_is_vouched_for_only_when_recent_and_the_agent_did_not_fail(
    last_pass_at: str | None, agent: dict[str, Any] | None, says: str | None
) -> None:
    found = doubt(last_pass_at, NOW, interval=300, jitter=30, agent_last_pass=agent)
    if says is None:
        assert found is None
    else:
        assert found is not None
        assert says in found


def test_the_allowed_age_is_two_intervals_the_jitter_and_a_backoff() -> None:
    allowed = 2 * 300 + 30 + STALE_GRACE
    just = datetime.fromtimestamp(NOW.timestamp() - allowed + 1, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    late = datetime.fromtimestamp(NOW.timestamp() - allowed - 1, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert doubt(just, NOW, 300, 30, None) is None
    assert doubt(late, NOW, 300, 30, None) is not None


def test_an_unforeseen_error_makes_ready_false_and_keeps_the_rest() -> None:
    previous = {
        "apiVersion": "pullnix.dev/v1alpha1",
        "kind": "NixOSDeployment",
        "metadata": {"name": "fleet"},
        "spec": {"interval": "5m"},
        "status": {
            "observedGeneration": 3,
            "lastAppliedRevision": "a" * 40,
            "history": [{"revision": "a" * 40}],
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "Converged",
                    "message": "ok",
                    "lastTransitionTime": "2026-12-01T11:00:00Z",
                }
            ],
        },
    }
    outcome = internal_error(OverflowError("1" * 5000))
    doc = failed_status(previous, "edge-01", outcome, "2026-12-01T12:00:00Z")
    (ready, *_) = doc["status"]["conditions"]
    assert (ready["type"], ready["status"], ready["reason"]) == ("Ready", "False", "InternalError")
    assert ready["message"].startswith("the pass failed: OverflowError: 111")
    assert len(ready["message"]) < 2 * MESSAGE_LIMIT
    assert doc["status"]["lastAppliedRevision"] == "a" * 40
    assert doc["status"]["history"] == [{"revision": "a" * 40}]
    assert doc["status"]["lastPassAt"] == "2026-12-01T12:00:00Z"
    assert previous["status"]["conditions"][0]["status"] == "True"  # not changed in place


def test_an_unforeseen_error_with_no_status_yet_makes_one() -> None:
    doc = failed_status({}, "edge-01", internal_error(OSError(24, "Too many open files")), "t")
    assert doc["metadata"]["name"] == "edge-01"
    assert doc["status"]["conditions"][0]["reason"] == "InternalError"
