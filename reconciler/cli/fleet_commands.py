"""`pullnix fleet status` and `pullnix fleet rollout REVISION`: the fleet at a glance.

Owns the two read commands that ask Prometheus (not any agent) about every
host it scrapes: their tables (aligned like `kubectl get`, sorted by wave
then host, stale hosts marked) and their `--json`. The Prometheus URL is
`--prometheus URL`, else `[fleet] prometheus_url` of the machine config.
Exit 0 with an answer, 1 when Prometheus cannot be asked.

Must not: decide what a wave waits for by itself; that is `core.waves.gate`,
given the waves as the hosts report them.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import click

from reconciler.cli.context import CliContext, pass_context
from reconciler.common.clock import utc_stamp
from reconciler.common.config import ConfigError
from reconciler.common.durations import format_duration
from reconciler.core import waves
from reconciler.telemetry.fleet_query import Fleet, HostRow, Prometheus, PrometheusError, read_fleet

_PROMETHEUS = click.option(
    "--prometheus",
    "url",
    metavar="URL",
    default="",
    help="Prometheus's base URL (default: [fleet] prometheus_url of agent.toml).",
)
_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


@click.group()
def fleet() -> None:
    """The fleet as the Prometheus that scrapes it sees it."""


@fleet.command("status")
@_PROMETHEUS
@_JSON
@pass_context
def fleet_status(ctx: CliContext, url: str, as_json: bool) -> None:
    """One row per host: wave, applied revision, Ready, last pass, helper, scrape."""
    now = time.time()
    hosts = _sorted(_ask(ctx, url, now).hosts)
    if as_json:
        click.echo(_dumps([_host_json(h) for h in hosts]))
        return
    rows = [("HOST", "WAVE", "REVISION", "READY", "REASON", "LAST PASS", "HELPER", "SCRAPED")]
    for h in hosts:
        rows.append(
            (h.host, h.wave or "-", h.revision[:12] or "-", h.ready, h.reason or "-",
             _ago(now, h.last_pass), h.helper or "-", _scraped(now, h))
        )  # fmt: skip
    _table(rows)


@fleet.command("rollout")
@click.argument("revision")
@_PROMETHEUS
@_JSON
@pass_context
def fleet_rollout(ctx: CliContext, revision: str, url: str, as_json: bool) -> None:
    """Per wave: how many hosts run REVISION, are healthy on it, failed it, and why a wave waits."""
    now = time.time()
    answer = _ask(ctx, url, now)
    revision = _full(answer, revision)
    report = rollout_report(answer, revision, now)
    if as_json:
        click.echo(_dumps({"revision": revision, "waves": report}))
        return
    click.echo(f"revision {revision}")
    rows = [("WAVE", "HOSTS", "ON REVISION", "HEALTHY", "FAILED", "STATE", "MESSAGE")]
    for w in report:
        rows.append(
            (w["name"] or "-", str(w["hosts"]), str(w["onRevision"]), str(w["healthy"]),
             str(len(w["failed"])), w["state"], w["message"])
        )  # fmt: skip
    _table(rows)


def rollout_report(answer: Fleet, revision: str, now: float) -> list[dict[str, Any]]:
    """Each wave's numbers for `revision` and its state: Done, Failed (a host of it rolled
    the revision back or failed it), Halted (an earlier wave did), Waiting or Deploying."""
    rollout = answer.rollout()
    view = answer.view()
    out = []
    groups: dict[tuple[int, str], list[HostRow]] = {}
    for h in _sorted(answer.hosts):
        groups.setdefault((_order(h), h.wave), []).append(h)
    for (_, name), members in groups.items():
        on = [h for h in members if h.revision == revision]
        healthy = [h for h in on if h.ready == "True" and not h.stale]
        failed = [
            f for f in answer.failures if f.revision == revision and f.host in _names(members)
        ]
        verdict = waves.gate(rollout, members[0].host, revision, view, now)
        if len(healthy) == len(members):
            state, message = "Done", ""
        elif failed:
            state, message = "Failed", ", ".join(f"{f.host} {f.reason}" for f in failed)
        elif isinstance(verdict, waves.RolloutHalted):
            state = "Halted"
            message = f"{verdict.host} (wave {verdict.host_wave}) reported {verdict.reason}"
        elif isinstance(verdict, waves.WaitForWave):
            state, message = "Waiting", verdict.message.removeprefix(f"wave {name} waits for ")
        else:
            state = "Deploying"
            message = "; ".join(f"{h.host}: {h.reason}" for h in members if h not in healthy)
        out.append(
            {"name": name, "hosts": len(members), "onRevision": len(on), "healthy": len(healthy),
             "failed": [{"host": f.host, "reason": f.reason} for f in failed],
             "state": state, "message": message}
        )  # fmt: skip
    return out


def _ask(ctx: CliContext, url: str, now: float) -> Fleet:
    if not url:
        try:
            url = ctx.machine_config().fleet.prometheus_url
        except ConfigError as exc:
            click.echo(f"pullnix: {exc}; or give --prometheus URL", err=True)
            sys.exit(1)
    if not url:
        click.echo(
            "pullnix: no Prometheus to ask: give --prometheus URL or set [fleet] "
            "prometheus_url in agent.toml",
            err=True,
        )
        sys.exit(1)
    try:
        return read_fleet(Prometheus(url), now)
    except PrometheusError as exc:
        click.echo(f"pullnix: {exc}", err=True)
        sys.exit(1)


def _full(answer: Fleet, revision: str) -> str:
    """A revision prefix as the one full revision the fleet knows it by (else as given)."""
    known = {h.revision for h in answer.hosts} | {f.revision for f in answer.failures}
    matches = {r for r in known if r and r.startswith(revision)}
    return matches.pop() if len(matches) == 1 else revision


def _order(h: HostRow) -> int:
    return h.wave_index if h.wave_index is not None else 1 << 30


def _sorted(hosts: Sequence[HostRow]) -> list[HostRow]:
    return sorted(hosts, key=lambda h: (_order(h), h.wave, h.host))


def _names(hosts: Sequence[HostRow]) -> set[str]:
    return {h.host for h in hosts}


def _host_json(h: HostRow) -> dict[str, Any]:
    return {
        "host": h.host,
        "wave": h.wave,
        "waveIndex": h.wave_index,
        "revision": h.revision,
        "ready": h.ready,
        "reason": h.reason,
        "helper": h.helper,
        "lastPassAt": _rfc3339(h.last_pass),
        "readySince": _rfc3339(h.ready_since) if h.ready_since else None,
        "lastScrapeAt": _rfc3339(h.last_scrape) if h.last_scrape else None,
        "stale": h.stale,
    }


def _ago(now: float, then: float) -> str:
    return format_duration(max(0, round(now - then))) if then else "-"


def _scraped(now: float, h: HostRow) -> str:
    age = _ago(now, h.last_scrape) + " ago" if h.last_scrape else ""
    if h.stale:
        return f"STALE ({age})" if age else "STALE"
    return age


def _rfc3339(t: float) -> str:
    return utc_stamp(datetime.fromtimestamp(t, UTC))


def _dumps(value: Any) -> str:
    return json.dumps(value, indent=2)


def _table(rows: Sequence[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [f"{cell:<{w}}" for cell, w in zip(row, widths, strict=False)]
        click.echo("   ".join([*cells, row[-1]]).rstrip())


COMMANDS: list[Any] = [fleet]
