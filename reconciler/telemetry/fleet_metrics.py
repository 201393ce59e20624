"""The fleet's metrics: what this agent tells the Prometheus that scrapes the whole fleet.

Owns the `pullnix_fleet_*` series, each labelled `host` and `wave`, that the
wave gate and `pullnix fleet` read back from Prometheus (README, "Metrics for
a fleet"). Cardinality is bounded by construction: one series per metric and
host for the current state (a changed label value replaces the old series),
and at most `FAILED_KEPT` failed revisions.

Must not: decide anything. `record_pass` takes the status document the pass
just wrote, and the pass's action only to say what the helper is doing.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from reconciler.common.durations import format_duration
from reconciler.core import decide as d
from reconciler.core.waves import Place
from reconciler.telemetry import metrics

#: How many of the most recent failed revisions a host exports.
FAILED_KEPT = 5


class _FleetMetrics:
    def __init__(self, registry: Any) -> None:
        from prometheus_client import Gauge

        def gauge(name: str, doc: str, labels: list[str]) -> Any:
            return Gauge(name, doc, labels, registry=registry)

        self.passed = gauge(
            "pullnix_fleet_pass_timestamp_seconds",
            "When this host's last pass ended (Unix time), labelled with what it left: "
            "the applied revision, Ready (True, False, Unknown) and its reason, and what the "
            "helper is doing.",
            ["host", "wave", "revision", "ready", "reason", "helper"],
        )
        self.ready = gauge(
            "pullnix_fleet_ready", "1 if this host is Ready, else 0.", ["host", "wave"]
        )
        self.stalled = gauge(
            "pullnix_fleet_stalled",
            "1 while this host is Stalled: it waits for a new commit or an operator.",
            ["host", "wave"],
        )
        self.ready_since = gauge(
            "pullnix_fleet_ready_since_timestamp_seconds",
            "Since when this host is Ready on its applied revision (Unix time); 0 if not Ready.",
            ["host", "wave"],
        )
        self.failed = gauge(
            "pullnix_fleet_failed_revision",
            f"1 for each of the {FAILED_KEPT} most recent revisions this host rolled back or "
            "failed, with the reason (RolledBack, ActivationFailed, BuildFailed, GateRefused, "
            "or a prebuilt system's refusal: InvalidSpec, NotInLock, LockFromAnotherHistory, "
            "UntrustedSignature).",
            ["host", "wave", "revision", "reason"],
        )
        self.wave = gauge(
            "pullnix_fleet_wave",
            "This host's wave: its place in spec.rollout.waves (0 first), labelled with what "
            "the wave waits for (soak, minHealthy); absent without waves.",
            ["host", "wave", "soak", "min_healthy"],
        )
        self.last: dict[Any, tuple[str, ...]] = {}  # metric -> the label values set last
        self.failed_set: set[tuple[str, ...]] = set()


_fleet: _FleetMetrics | None = None


def _enabled() -> _FleetMetrics | None:
    global _fleet
    if not metrics.enabled():  # metrics are not served: count nothing
        return None
    if _fleet is None:
        _fleet = _FleetMetrics(metrics.registry())
    return _fleet


def record_pass(
    host: str,
    place: Place,
    status_doc: Mapping[str, Any],
    failed: Mapping[str, d.Failure],
    action: d.Action | None,
    now: float,
) -> None:
    """Export the state the pass left; `failed` is the record's failures, oldest first."""
    if (m := _enabled()) is None:
        return
    wave = place.wave
    status = status_doc.get("status") or {}
    revision = status.get("lastAppliedRevision") or ""
    ready, reason, since = ready_of(status)
    _replace(m, m.passed, (host, wave, revision, ready, reason, helper_activity(action)), now)
    _replace(m, m.ready, (host, wave), 1.0 if ready == "True" else 0.0)
    stalled = any(
        c.get("type") == "Stalled" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )
    _replace(m, m.stalled, (host, wave), 1.0 if stalled else 0.0)
    _replace(m, m.ready_since, (host, wave), since if ready == "True" else 0.0)
    if wave:
        after = place.after
        place_labels = (host, wave, format_duration(after.soak), after.min_healthy)
        _replace(m, m.wave, place_labels, float(place.index))
    elif (old := m.last.pop(m.wave, None)) is not None:
        m.wave.remove(*old)
    wanted: set[tuple[str, ...]] = {
        (host, wave, rev, str(f.reason)) for rev, f in list(failed.items())[-FAILED_KEPT:]
    }
    for labels in m.failed_set - wanted:
        m.failed.remove(*labels)
    for labels in wanted:
        m.failed.labels(*labels).set(1)
    m.failed_set = wanted


def _replace(m: _FleetMetrics, gauge: Any, labels: tuple[str, ...], value: float) -> None:
    """Set the one series of `gauge`, dropping the one it had under other label values."""
    old = m.last.get(gauge)
    if old is not None and old != labels:
        gauge.remove(*old)
    gauge.labels(*labels).set(value)
    m.last[gauge] = labels


def ready_of(status: Mapping[str, Any]) -> tuple[str, str, float]:
    """(Ready's status, its reason, since when it is Ready on the applied revision)."""
    ready = next(
        (c for c in status.get("conditions") or [] if c.get("type") == "Ready"),
        {"status": "Unknown", "reason": ""},
    )
    since = _time(ready.get("lastTransitionTime"))
    applied = status.get("lastAppliedRevision")
    for entry in status.get("history") or []:  # newest first
        if entry.get("revision") == applied and entry.get("result") == "Succeeded":
            since = max(since, _time(entry.get("finishedAt")))
            break
    return str(ready.get("status", "Unknown")), str(ready.get("reason", "")), since


def helper_activity(action: d.Action | None) -> str:
    """What the helper is doing, in one word, as the pass saw it."""
    match action:
        case d.WaitForHelper(state=state):
            return state or "Busy"
        case d.Confirm():
            return "Verifying"
        case d.Deploy() | d.RevertDrift():
            return "Applying"
    return "Idle"


def _time(text: Any) -> float:
    if not isinstance(text, str) or not text:
        return 0.0
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0
