"""Waves: whether this host may deploy a revision yet, from what Prometheus says of the fleet.

Owns the rollout policy of `spec.rollout.waves` as one pure function,
`gate(rollout, host, revision, fleet, now)`:

- a host belongs to the first wave with a glob matching its name; a host no
  wave matches goes after the last wave (with the default `after`: no soak,
  100 %);
- wave 0 goes at once, without asking anyone;
- a later wave never deploys a revision that a host of an earlier wave rolled
  back or failed (`RolloutHalted`, naming that host and its reason);
- otherwise it waits (`WaitingForWave`, with the numbers and the names) until
  the nearest earlier wave that has hosts has `minHealthy` of them Ready on
  the revision for `soak`; earlier waves with no hosts are skipped, and with
  none at all the host goes;
- when Prometheus could not be asked, it waits and says so (fail closed).

A host's wave is worked out from its name and this spec's globs, never taken
from the label it exports, so every agent reading one spec agrees.

Must not: ask Prometheus, read the clock or keep state; the shell gathers a
`FleetView` (or a `FleetUnknown`) and passes `now` in.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass

from reconciler.common.durations import human_duration
from reconciler.core.model import Rollout, WaveAfter

#: The name of the implicit last wave of hosts no glob matches.
UNASSIGNED = "unassigned"
#: How many names a message lists before it says "and N more".
_NAMES_SHOWN = 3


@dataclass(frozen=True)
class HostReport:
    """One agent as Prometheus last saw it."""

    host: str
    revision: str | None  # the applied revision
    ready: bool
    ready_since: float | None = None  # Unix time it became Ready on `revision`
    reason: str = ""  # the Ready condition's reason
    stale: bool = False  # not scraped for 3 intervals (or its target is down)


@dataclass(frozen=True)
class FailedRevision:
    """A host rolled `revision` back, or failed to build or gate it."""

    host: str
    revision: str
    reason: str  # RolledBack, BuildFailed, GateRefused, ActivationFailed


@dataclass(frozen=True)
class FleetView:
    """What Prometheus answered: the hosts it knows and the failures of the revision asked."""

    hosts: tuple[HostReport, ...] = ()
    failures: tuple[FailedRevision, ...] = ()


@dataclass(frozen=True)
class FleetUnknown:
    """Prometheus could not be asked, or answered something that is not a fleet."""

    url: str
    error: str
    retry_in: float  # seconds until the shell asks again


# The gate's verdicts. WaitForWave and RolloutHalted are actions of the pass (see decide).


@dataclass(frozen=True)
class Go:
    wave: str | None  # None: the spec has no waves


@dataclass(frozen=True)
class WaitForWave:
    """Not yet: the previous wave is not healthy on the revision for long enough."""

    revision: str
    wave: str
    message: str


@dataclass(frozen=True)
class RolloutHalted:
    """Never: a host of an earlier wave rolled the revision back or failed it."""

    revision: str
    wave: str
    host: str
    host_wave: str
    reason: str


Verdict = Go | WaitForWave | RolloutHalted


def wave_index(rollout: Rollout, host: str) -> int:
    """The index of the first wave matching `host`; len(waves) for a host none matches."""
    for index, wave in enumerate(rollout.waves):
        if any(fnmatch.fnmatchcase(host, glob) for glob in wave.hosts):
            return index
    return len(rollout.waves)


def wave_name(rollout: Rollout, index: int) -> str:
    return rollout.waves[index].name if index < len(rollout.waves) else UNASSIGNED


def needs_fleet(rollout: Rollout, host: str) -> bool:
    """Whether `gate` needs to hear from Prometheus for `host` (not without waves, nor wave 0)."""
    return bool(rollout.waves) and wave_index(rollout, host) > 0


def earlier_waves(rollout: Rollout, host: str) -> tuple[str, ...]:
    """The names of the waves before `host`'s: all the gate needs to hear about."""
    return tuple(w.name for w in rollout.waves[: wave_index(rollout, host)])


@dataclass(frozen=True)
class Place:
    """Where a host stands in the rollout, as its metrics say it to the fleet."""

    wave: str  # "" without waves
    index: int
    after: WaveAfter


def place_of(rollout: Rollout, host: str) -> Place:
    index = wave_index(rollout, host)
    if not rollout.waves:
        return Place("", 0, WaveAfter())
    after = rollout.waves[index].after if index < len(rollout.waves) else WaveAfter()
    return Place(wave_name(rollout, index), index, after)


def gate(
    rollout: Rollout, host: str, revision: str, fleet: FleetView | FleetUnknown, now: float
) -> Verdict:
    """May `host` deploy `revision` now? See the module docstring for the rules, in order."""
    if not rollout.waves:
        return Go(None)
    own = wave_index(rollout, host)
    name = wave_name(rollout, own)
    if own == 0:
        return Go(name)
    short = revision[:12]
    if isinstance(fleet, FleetUnknown):
        return WaitForWave(
            revision,
            name,
            f"wave {name} waits: cannot ask Prometheus at {fleet.url} about the earlier "
            f"waves ({fleet.error}); not deploying {short} until it answers "
            f"(next try in {human_duration(fleet.retry_in, compact=True)})",
        )
    halts = sorted(
        (wave_index(rollout, f.host), f.host, f.reason)
        for f in fleet.failures
        if f.revision == revision and wave_index(rollout, f.host) < own
    )
    if halts:
        index, culprit, reason = halts[0]
        return RolloutHalted(revision, name, culprit, wave_name(rollout, index), reason)
    for previous in range(own - 1, -1, -1):
        members = sorted(
            (h for h in fleet.hosts if wave_index(rollout, h.host) == previous),
            key=lambda h: h.host,
        )
        if members:
            after = rollout.waves[own].after if own < len(rollout.waves) else WaveAfter()
            return _after(name, rollout.waves[previous].name, after, members, revision, now)
    return Go(name)


def _after(
    own: str,
    previous: str,
    after: WaveAfter,
    members: list[HostReport],
    revision: str,
    now: float,
) -> Verdict:
    """Go when `after.min_healthy` of `members` are Ready on `revision` for `after.soak`."""
    needed = math.ceil(after.min_healthy_fraction * len(members) - 1e-9)
    healthy = [h for h in members if _healthy_on(h, revision)]
    ages = sorted((now - (h.ready_since or now) for h in healthy), reverse=True)
    soaked = sum(1 for age in ages if age >= after.soak)
    if soaked >= needed:
        return Go(own)
    numbers = f"{previous}: {len(healthy)}/{len(members)} hosts healthy on {revision[:12]}"
    if after.soak > 0 and len(ages) >= needed > 0:
        soaked_for = human_duration(max(ages[needed - 1], 0.0), compact=True)
        numbers += f" for {soaked_for} of {human_duration(after.soak, compact=True)}"
    lagging = [f"{h.host} ({_why_not(h, revision)})" for h in members if h not in healthy]
    return WaitForWave(
        revision,
        own,
        f"wave {own} waits for {numbers}; needs {needed} ({after.min_healthy})"
        + (f"; not yet: {_names(lagging)}" if lagging else ""),
    )


def _healthy_on(host: HostReport, revision: str) -> bool:
    return host.ready and not host.stale and host.revision == revision


def _why_not(host: HostReport, revision: str) -> str:
    if host.stale:
        return "stale"
    if host.revision != revision:
        return f"on {host.revision[:12]}" if host.revision else "nothing applied"
    return f"not Ready: {host.reason or 'Unknown'}"


def _names(items: list[str]) -> str:
    shown = ", ".join(items[:_NAMES_SHOWN])
    more = len(items) - _NAMES_SHOWN
    return shown + (f" and {more} more" if more > 0 else "")
