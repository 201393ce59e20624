"""Asking Prometheus about the fleet: its HTTP API, read into the wave gate's values.

Owns the PromQL the wave gate and `pullnix fleet` send, the reading of the
answers (anything not shaped like a Prometheus vector is an error, never an
empty fleet), staleness (a host not scraped for `STALE_INTERVALS` of its
target's scrape interval), and the backoff of `FleetAsker`: after a failure
it does not ask again until the backoff has passed, however often a pass
runs, and says when it will.

Must not: decide whether a host deploys (that is `core.waves.gate`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from reconciler.common.durations import parse_duration
from reconciler.core.model import Rollout, Wave, WaveAfter
from reconciler.core.waves import FailedRevision, FleetUnknown, FleetView, HostReport

#: How far back a host still counts as part of the fleet after its last scrape.
LOOKBACK = "1h"
#: Missed scrapes after which a host is stale.
STALE_INTERVALS = 3
#: How long the asker keeps the targets' scrape intervals before reading them again.
INTERVALS_KEPT = 600.0
#: The scrape interval assumed for a host whose target Prometheus does not list.
DEFAULT_INTERVAL = 60.0


class PrometheusError(Exception):
    """Prometheus did not answer, or answered something that is not a vector."""


@dataclass(frozen=True)
class HostRow:
    """One host as `pullnix fleet status` shows it."""

    host: str
    wave: str
    revision: str
    ready: str  # True, False, Unknown
    reason: str
    helper: str
    last_pass: float  # Unix time
    ready_since: float  # Unix time, 0 if not Ready
    last_scrape: float | None  # Unix time; None when its series are gone (target down)
    stale: bool
    wave_index: int | None = None  # its place in spec.rollout.waves; None without waves
    after: WaveAfter = field(default_factory=WaveAfter)  # what its wave waits for


@dataclass(frozen=True)
class Fleet:
    hosts: tuple[HostRow, ...]
    failures: tuple[FailedRevision, ...]

    def rollout(self) -> Rollout:
        """The waves as the hosts report them: each wave's own hosts, in order, with its `after`.

        Enough for `core.waves.gate` to say what a wave waits for, without the spec."""
        waves: dict[int, tuple[str, WaveAfter, list[str]]] = {}
        for h in self.hosts:
            if h.wave_index is not None and h.wave:
                waves.setdefault(h.wave_index, (h.wave, h.after, []))[2].append(h.host)
        if not waves:
            return Rollout()
        last = max(waves)
        return Rollout(
            tuple(
                Wave(waves[i][0], tuple(waves[i][2]), waves[i][1])
                if i in waves
                else Wave(f"wave-{i}", ())  # a wave no host reports: it has no hosts
                for i in range(last + 1)
            )
        )

    def view(self) -> FleetView:
        return FleetView(
            tuple(
                HostReport(h.host, h.revision or None, h.ready == "True", h.ready_since or None,
                           h.reason, h.stale)
                for h in self.hosts
            ),
            self.failures,
        )  # fmt: skip


class Prometheus:
    """The few calls of Prometheus's HTTP API that pullnix makes."""

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _get(self, path: str, params: dict[str, str]) -> Any:
        # Imported here: urllib.request brings http.client and the email package,
        # about 2 MB of every agent's memory, and only agents with waves ask.
        import urllib.error
        import urllib.parse
        import urllib.request

        query = urllib.parse.urlencode(params)
        address = f"{self.url}{path}" + (f"?{query}" if query else "")
        try:
            with urllib.request.urlopen(address, timeout=self.timeout) as response:  # noqa: S310
                body = response.read(32 * 1024 * 1024)
        except urllib.error.HTTPError as exc:
            raise PrometheusError(f"HTTP {exc.code} from {self.url}{path}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise PrometheusError(f"{self.url} does not answer: {reason}") from None
        try:
            doc = json.loads(body)
        except ValueError:
            raise PrometheusError(f"{self.url}{path} answered something that is not JSON") from None
        if not isinstance(doc, dict) or doc.get("status") != "success" or "data" not in doc:
            raise PrometheusError(f"{self.url}{path} did not answer with a Prometheus success")
        return doc["data"]

    def vector(self, promql: str) -> list[tuple[dict[str, str], float]]:
        """An instant query's samples as (labels, value); PrometheusError unless a vector."""
        data = self._get("/api/v1/query", {"query": promql})
        if not isinstance(data, dict) or data.get("resultType") != "vector":
            raise PrometheusError(f"the answer to {promql!r} is not an instant vector")
        out = []
        for sample in data.get("result") or []:
            try:
                labels, (_, value) = sample["metric"], sample["value"]
                number = float(value)
            except (KeyError, TypeError, ValueError):
                raise PrometheusError(
                    f"a sample in the answer to {promql!r} is malformed"
                ) from None
            if not isinstance(labels, dict) or math.isnan(number):
                continue
            out.append(({str(k): str(v) for k, v in labels.items()}, number))
        return out

    def scrape_intervals(self) -> dict[str, float]:
        """Each active target's instance -> its scrape interval in seconds."""
        data = self._get("/api/v1/targets", {"state": "active"})
        out: dict[str, float] = {}
        for target in data.get("activeTargets") or [] if isinstance(data, dict) else []:
            instance = (target.get("labels") or {}).get("instance")
            interval = _seconds(target.get("scrapeInterval"))
            if instance and interval:
                out[str(instance)] = interval
        return out


def read_fleet(
    prometheus: Prometheus,
    now: float,
    waves: Sequence[str] | None = None,
    revision: str | None = None,
    intervals: Mapping[str, float] | None = None,
) -> Fleet:
    """Every host Prometheus saw within LOOKBACK, and every failed revision they export.

    `waves` narrows the answer to the hosts that report one of those waves and
    `revision` the failures to that revision (what the wave gate needs, so a
    big fleet's later waves do not fetch the whole fleet each pass);
    `intervals` are the targets' scrape intervals, when the caller has them."""
    where = _selector(waves)
    passes = prometheus.vector(
        f"last_over_time(pullnix_fleet_pass_timestamp_seconds{where}[{LOOKBACK}])"
    )
    scraped = {
        labels.get("host", ""): value
        for labels, value in prometheus.vector(f"timestamp(pullnix_fleet_ready{where})")
    }
    since = {
        labels.get("host", ""): value
        for labels, value in prometheus.vector(
            f"last_over_time(pullnix_fleet_ready_since_timestamp_seconds{where}[{LOOKBACK}])"
        )
    }
    failed = prometheus.vector(
        f"last_over_time(pullnix_fleet_failed_revision{_selector(waves, revision)}[{LOOKBACK}])"
    )
    places = {
        (labels.get("host", ""), labels.get("wave", "")): (int(value), labels)
        for labels, value in prometheus.vector(
            f"last_over_time(pullnix_fleet_wave{where}[{LOOKBACK}])"
        )
    }
    if intervals is None:
        intervals = prometheus.scrape_intervals()
    newest: dict[str, tuple[dict[str, str], float]] = {}
    for labels, value in passes:
        host = labels.get("host")
        if host and (host not in newest or value > newest[host][1]):
            newest[host] = (labels, value)
    rows = []
    for host, (labels, last_pass) in sorted(newest.items()):
        scrape = scraped.get(host)
        interval = intervals.get(labels.get("instance", ""), DEFAULT_INTERVAL)
        stale = scrape is None or now - scrape > STALE_INTERVALS * interval
        wave = labels.get("wave", "")
        index, place = places.get((host, wave), (None, {}))
        rows.append(
            HostRow(host, wave, labels.get("revision", ""),
                    labels.get("ready", "Unknown"), labels.get("reason", ""),
                    labels.get("helper", ""), last_pass, since.get(host, 0.0), scrape, stale,
                    index, _after(place))
        )  # fmt: skip
    failures = tuple(
        sorted(
            {
                FailedRevision(labels["host"], labels["revision"], labels.get("reason", ""))
                for labels, _ in failed
                if labels.get("host") and labels.get("revision")
            },
            key=lambda f: (f.host, f.revision),
        )
    )
    return Fleet(tuple(rows), failures)


class FleetAsker:
    """The wave gate's way to Prometheus: one answer per pass, failures backed off.

    After the n-th failure in a row it does not ask again for
    min(cap, initial * 2**(n-1)) seconds, and answers the same FleetUnknown
    with the time left, so no pass hammers a Prometheus that is down.
    """

    def __init__(
        self,
        url: str,
        timeout: float = 5.0,
        *,
        clock: Callable[[], float],
        initial: float = 2.0,
        cap: float = 60.0,
    ) -> None:
        self.url = url
        self.prometheus = Prometheus(url, timeout) if url else None
        self.clock = clock
        self.initial, self.cap = initial, cap
        self.failures = 0
        self.quiet_until = 0.0
        self.last_error = ""
        self.intervals: tuple[float, dict[str, float]] | None = None  # (when read, them)

    def ask(
        self, waves: Sequence[str] | None = None, revision: str | None = None
    ) -> FleetView | FleetUnknown:
        """The fleet (or only `waves`, and failures of `revision`), or why it is unknown."""
        now = self.clock()
        if self.prometheus is None:
            return FleetUnknown("(none)", "agent.toml [fleet] prometheus_url is not set", 0.0)
        if now < self.quiet_until:
            return FleetUnknown(self.url, self.last_error, self.quiet_until - now)
        try:
            if self.intervals is None or now - self.intervals[0] > INTERVALS_KEPT:
                self.intervals = (now, self.prometheus.scrape_intervals())
            view = read_fleet(self.prometheus, now, waves, revision, self.intervals[1]).view()
        except PrometheusError as exc:
            self.failures += 1
            delay = min(self.cap, self.initial * 2 ** min(self.failures - 1, 30))
            self.quiet_until = now + delay
            self.last_error = str(exc)
            return FleetUnknown(self.url, self.last_error, delay)
        self.failures, self.quiet_until = 0, 0.0
        return view


def _selector(waves: Sequence[str] | None, revision: str | None = None) -> str:
    """A PromQL label selector for those waves (names are [a-z0-9-], safe in a regex)."""
    matchers = []
    if waves is not None:
        matchers.append(f'wave=~"{"|".join(waves)}"')
    if revision is not None:
        matchers.append(f'revision="{revision}"')
    return "{" + ", ".join(matchers) + "}" if matchers else ""


def _after(labels: dict[str, str]) -> WaveAfter:
    soak = _seconds(labels.get("soak")) or 0.0
    share = labels.get("min_healthy", "100%")
    return WaveAfter(soak, share if share.rstrip("%").isdigit() else "100%")


def _seconds(text: Any) -> float | None:
    """Prometheus's durations ("1s", "15s", "1m") as seconds."""
    try:
        return parse_duration(text) if isinstance(text, str) else None
    except ValueError:
        return None
