"""The commands that act on this machine: reconcile, status, history, suspend, resume, retry.

Owns their output (tables for people, `--json` for programs) and exit codes
(DESIGN.md, "The command line"): `reconcile --once` and `status` exit 0 when
converged and healthy, 3 when rolled back, stalled or degraded, 1 on error.

Must not: decide or reconcile by itself; it calls the controller.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Sequence
from typing import Any

import click

from reconciler.cli.context import CliContext, pass_context
from reconciler.controller.reconcile import PassResult, Reconciler
from reconciler.controller.store import StateStore, conditions_of, history_of
from reconciler.core.status import exit_code
from reconciler.helper.config import ConfigError, MachineConfig, require_urls

#: Between passes of `reconcile --once` while the helper works.
FOLLOW_INTERVAL = 0.25


def _machine(ctx: CliContext, need_urls: bool = False) -> MachineConfig:
    try:
        machine = ctx.machine_config()
        if need_urls:
            require_urls(machine, str(ctx.config_path))
    except ConfigError as exc:
        click.echo(f"pullnix: {exc}", err=True)
        sys.exit(1)
    return machine


@click.command()
@click.option("--once", is_flag=True, help="Run passes in this process until the outcome is "
              "known (the helper's verdict included), then exit.")
@click.option("--timeout", type=float, default=1800.0, show_default=True,
              help="With --once: give up after this many seconds.")
@click.option("--json", "as_json", is_flag=True, help="Print the final status as JSON.")
@pass_context
def reconcile(ctx: CliContext, once: bool, timeout: float, as_json: bool) -> None:
    """Reconcile this machine now: exit 0 converged and healthy, 3 not, 1 on error."""
    if not once:
        click.echo("pullnix: only `reconcile --once` is available in this version", err=True)
        sys.exit(1)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s",
                        stream=sys.stderr)
    machine = _machine(ctx, need_urls=True)
    reconciler = Reconciler(machine)
    deadline = time.monotonic() + timeout
    result = reconciler.run_pass()
    while not result.settled and not result.error and time.monotonic() < deadline:
        time.sleep(FOLLOW_INTERVAL)
        result = reconciler.run_pass()
    _report(machine, result, as_json)
    sys.exit(result.exit_code if result.settled or result.error else 1)


def _report(machine: MachineConfig, result: PassResult, as_json: bool) -> None:
    doc = StateStore(machine.state_dir).load_status()
    if as_json:
        click.echo(json.dumps(doc, indent=2))
    else:
        click.echo(f"{result.outcome.reason}: {result.outcome.message}")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the whole status document.")
@pass_context
def status(ctx: CliContext, as_json: bool) -> None:
    """Conditions, revisions and generation; exit 0 when Ready, 3 when not."""
    machine = _machine(ctx)
    doc = StateStore(machine.state_dir).load_status()
    if not doc:
        click.echo(f"pullnix: no status yet in {machine.state_dir}; has a pass run?", err=True)
        sys.exit(3)
    if as_json:
        click.echo(json.dumps(doc, indent=2))
    else:
        st = doc.get("status", {})
        rows = [
            ("Host", machine.host),
            ("Last applied", st.get("lastAppliedRevision") or "-"),
            ("Last attempted", st.get("lastAttemptedRevision") or "-"),
            ("Generation", str(st.get("currentGeneration") or "-")),
            ("System", st.get("currentSystem") or "-"),
            ("Source", (st.get("source") or {}).get("url") or "-"),
            ("Suspended", "yes" if st.get("suspended") else "no"),
        ]
        width = max(len(k) for k, _ in rows)
        for key, value in rows:
            click.echo(f"{key:<{width}}  {value}")
        click.echo("")
        _table([("TYPE", "STATUS", "REASON", "SINCE", "MESSAGE")] + [
            (c.type, c.status, c.reason, c.last_transition_time, c.message)
            for c in conditions_of(doc)])
    sys.exit(exit_code(conditions_of(doc)))


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the entries as JSON.")
@pass_context
def history(ctx: CliContext, as_json: bool) -> None:
    """Past deployments, newest first, with their trace ids."""
    machine = _machine(ctx)
    entries = history_of(StateStore(machine.state_dir).load_status())
    if as_json:
        click.echo(json.dumps([e.to_json() for e in entries], indent=2))
        return
    _table([("FINISHED", "REVISION", "GEN", "RESULT", "TRACE ID", "MESSAGE")] + [
        (e.finished_at, e.revision[:12], "" if e.generation is None else str(e.generation),
         e.result, e.trace_id or "-", e.message) for e in entries])


@click.command()
@pass_context
def suspend(ctx: CliContext) -> None:
    """Stop deploying (new generations are still confirmed) until `pullnix resume`."""
    StateStore(_machine(ctx).state_dir).update_record(suspended=True)
    click.echo("suspended")


@click.command()
@pass_context
def resume(ctx: CliContext) -> None:
    """Undo `pullnix suspend`."""
    StateStore(_machine(ctx).state_dir).update_record(suspended=False)
    click.echo("resumed")


@click.command()
@pass_context
def retry(ctx: CliContext) -> None:
    """Try the last attempted revision once more, although it failed or was rolled back."""
    machine = _machine(ctx)
    store = StateStore(machine.state_dir)
    revision = store.load_status().get("status", {}).get("lastAttemptedRevision")
    if not revision:
        click.echo("pullnix: nothing to retry: no revision has been attempted", err=True)
        sys.exit(1)
    store.update_record(retry_revision=revision)
    click.echo(f"will retry {revision[:12]} at the next pass")


def _table(rows: Sequence[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [f"{cell:<{w}}" for cell, w in zip(row, widths, strict=False)]
        click.echo("  ".join([*cells, row[-1]]).rstrip())


COMMANDS: list[Any] = [reconcile, status, history, suspend, resume, retry]
