"""The commands that act on this machine: agent, reconcile, status, history, suspend, resume,
retry, rollback.

Owns their output (tables for people, `--json` for programs) and exit codes
(docs/design.md, "The command line"): `reconcile --once`, `reconcile --now --wait`
and `status` exit 0 when converged and healthy, 3 when rolled back, stalled or
degraded, 1 on error. suspend, resume, retry and rollback are
`controller.commands`, run by the running agent through its local API when
one answers (so they take effect between its passes, at once), else here.

Must not: decide or reconcile by itself; it calls the controller.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import click

from reconciler import telemetry
from reconciler.cli.context import CliContext, pass_context
from reconciler.common.config import ConfigError, MachineConfig, require_urls
from reconciler.common.durations import parse_duration
from reconciler.common.tracelinks import trace_link
from reconciler.common.wire import ProtocolError
from reconciler.controller.agent import Agent, AgentOptions, check_agent_config
from reconciler.controller.apiclient import AgentClient, AgentRefused, AgentUnavailable
from reconciler.controller.commands import Commands, change_now
from reconciler.controller.loop import PassLoop
from reconciler.controller.reconcile import PassResult
from reconciler.controller.store import StateStore, conditions_of, history_of
from reconciler.controller.triggers import Wakeup
from reconciler.core.schedule import BackoffPolicy, effective_interval
from reconciler.core.status import exit_code
from reconciler.core.vouch import doubt


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
@click.option(
    "--once",
    is_flag=True,
    help="Run passes in this process until the outcome is "
    "known (the helper's verdict included), then exit.",
)
@click.option("--now", is_flag=True, help="Ask the running agent for a pass now.")
@click.option(
    "--wait",
    is_flag=True,
    help="With --now: follow that pass (and the helper's "
    "verdict, if it deploys) and exit with its verdict.",
)
@click.option(
    "--timeout",
    type=float,
    default=1800.0,
    show_default=True,
    help="With --once or --now --wait: give up after this many seconds.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the final status as JSON.")
@pass_context
def reconcile(
    ctx: CliContext, once: bool, now: bool, wait: bool, timeout: float, as_json: bool
) -> None:
    """Reconcile this machine now: exit 0 converged and healthy, 3 not, 1 on error."""
    if once == now:
        click.echo(
            "pullnix: say either `reconcile --once` (a pass in this process) or "
            "`reconcile --now [--wait]` (ask the running agent)",
            err=True,
        )
        sys.exit(1)
    machine = _machine(ctx, need_urls=once)
    if now:
        answer = _ask_agent(machine, "reconcile", wait=wait, timeout=timeout)
        if answer is None:
            click.echo(
                f"pullnix: no agent answers on {machine.agent.socket}; start `pullnix "
                "agent`, or run `pullnix reconcile --once`",
                err=True,
            )
            sys.exit(1)
        if not wait:
            click.echo("a pass is queued")
            sys.exit(0)
        if as_json:
            click.echo(json.dumps(StateStore(machine.state_dir).load_status(), indent=2))
        else:
            click.echo(f"{answer['reason']}: {answer['message']}")
        sys.exit(int(answer["exitCode"]))
    telemetry.configure_logging(machine.telemetry.log_format)
    # The agent's own loop, in this process, until the outcome is known (the helper's
    # verdict included) or the time is up.
    deadline = time.monotonic() + timeout
    loop = PassLoop(machine, Wakeup())
    loop.run(threading.Event(), until=lambda r: r.done or time.monotonic() >= deadline)
    assert loop.last is not None  # `run` returns after a pass
    result = loop.last.result
    _report(machine, result, as_json)
    sys.exit(result.exit_code if result.settled or result.error else 1)


def _ask_agent(machine: MachineConfig, op: str, **fields: Any) -> dict[str, Any] | None:
    """The running agent's answer; None when no agent runs; exit 1 when it refuses."""
    timeout = float(fields.get("timeout", 0.0))
    try:
        return AgentClient(machine.agent.socket).request(
            op, socket_timeout=timeout + 60.0 if fields.get("wait") else 60.0, **fields
        )
    except AgentUnavailable:
        return None
    except AgentRefused as exc:
        click.echo(f"pullnix: the agent says {exc.code}: {exc.message}", err=True)
        sys.exit(1)


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
    problem = _doubt(machine, doc)
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
        if st.get("helperConfigError"):
            rows.append(
                ("Helper config", f"REFUSED, runs on the old one: {st['helperConfigError']}")
            )
        width = max(len(k) for k, _ in rows)
        for key, value in rows:
            click.echo(f"{key:<{width}}  {value}")
        click.echo("")
        _table(
            [("TYPE", "STATUS", "REASON", "SINCE", "MESSAGE")]
            + [
                (c.type, c.status, c.reason, c.last_transition_time, c.message)
                for c in conditions_of(doc)
            ]
        )
    if problem is not None:
        click.echo(f"pullnix: this status cannot be vouched for: {problem}", err=True)
        sys.exit(3)
    sys.exit(exit_code(conditions_of(doc)))


def _doubt(machine: MachineConfig, doc: dict[str, Any]) -> str | None:
    """Why status.json may be out of date (core.vouch), asking the running agent, if any,
    how its last pass went (status.json is not written when the disk is full)."""
    try:
        answer = AgentClient(machine.agent.socket, timeout=5).request("status")
        last_pass = (answer.get("agent") or {}).get("lastPass")
    except (AgentUnavailable, AgentRefused):
        last_pass = None
    raw = (doc.get("spec") or {}).get("interval")
    try:
        spec_interval = parse_duration(raw) if isinstance(raw, str) else None
    except ValueError:
        spec_interval = None
    return doubt(
        (doc.get("status") or {}).get("lastPassAt"),
        datetime.now(UTC),
        effective_interval(machine.triggers.interval, spec_interval),
        machine.triggers.jitter,
        last_pass,
    )


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the entries as JSON.")
@click.option("--wide", is_flag=True, help="Whole revisions and store paths, and trace links.")
@pass_context
def history(ctx: CliContext, as_json: bool, wide: bool) -> None:
    """Past deployments, newest first, with their trace ids (and links, with
    `[telemetry] trace_url`)."""
    machine = _machine(ctx)
    entries = history_of(StateStore(machine.state_dir).load_status())
    link = machine.telemetry.trace_url
    if as_json:
        docs = [
            {**e.to_json(), "traceUrl": trace_link(link, e.trace_id)} if link else e.to_json()
            for e in entries
        ]
        click.echo(json.dumps(docs, indent=2))
        return
    if wide:
        _table(
            [("FINISHED", "REVISION", "GEN", "RESULT", "STORE PATH", "TRACE", "MESSAGE")]
            + [
                (
                    e.finished_at,
                    e.revision,
                    "" if e.generation is None else str(e.generation),
                    e.result,
                    e.store_path or "-",
                    trace_link(link, e.trace_id) or e.trace_id or "-",
                    e.message,
                )
                for e in entries
            ]
        )
        return
    _table(
        [("FINISHED", "REVISION", "GEN", "RESULT", "TRACE ID", "MESSAGE")]
        + [
            (
                e.finished_at,
                e.revision[:12],
                "" if e.generation is None else str(e.generation),
                e.result,
                e.trace_id or "-",
                e.message,
            )
            for e in entries
        ]
    )


@click.command()
@pass_context
def suspend(ctx: CliContext) -> None:
    """Stop deploying (new generations are still confirmed) until `pullnix resume`."""
    click.echo(_command(_machine(ctx), "suspend")["message"])


@click.command()
@pass_context
def resume(ctx: CliContext) -> None:
    """Undo `pullnix suspend`."""
    click.echo(_command(_machine(ctx), "resume")["message"])


@click.command()
@pass_context
def retry(ctx: CliContext) -> None:
    """Try the last attempted revision once more, although it failed or was rolled back."""
    click.echo(_command(_machine(ctx), "retry")["message"])


@click.command()
@click.option(
    "--wait/--no-wait",
    default=True,
    show_default=True,
    help="Wait for the helper's verdict on the rollback.",
)
@click.option(
    "--timeout",
    type=float,
    default=600.0,
    show_default=True,
    help="With --wait: give up after this many seconds.",
)
@pass_context
def rollback(ctx: CliContext, wait: bool, timeout: float) -> None:
    """Switch back to the previous generation; the revision left is not applied again.

    Goes through the running agent when one answers, else straight to the helper
    (the agent then marks the revision at its next pass). Exit 0 when rolled back.
    """
    answer = _command(_machine(ctx), "rollback", wait=wait, timeout=timeout)
    if not wait:
        click.echo(f"rollback started: operation {answer['operationId']}")
        return
    click.echo(
        f"rollback {answer['result']}: operation {answer['operationId']}"
        + (f": {answer['message']}" if answer.get("message") else "")
    )
    sys.exit(int(answer["exitCode"]))


def _command(machine: MachineConfig, op: str, **fields: Any) -> dict[str, Any]:
    """Run a command through the running agent when one answers (so it takes effect between
    its passes, at once), else here: the same `Commands`, on the record under its lock or
    straight to the helper. Exit 1 when it is refused."""
    answer = _ask_agent(machine, op, **fields)
    if answer is not None:
        return answer
    commands = Commands(machine, change_now(StateStore(machine.state_dir)))
    try:
        match op:
            case "suspend":
                return commands.suspend()
            case "resume":
                return commands.resume()
            case "retry":
                return commands.retry()
            case _:
                return commands.rollback(bool(fields["wait"]), float(fields["timeout"]))
    except ProtocolError as exc:
        click.echo(f"pullnix: {op}: {exc.message}", err=True)
        sys.exit(1)


@click.command()
@click.option(
    "--backoff-initial",
    type=float,
    default=5.0,
    show_default=True,
    help="Seconds to wait after the first failed pass (doubles up to --backoff-max).",
)
@click.option(
    "--backoff-max",
    type=float,
    default=300.0,
    show_default=True,
    help="The longest wait after failed passes.",
)
@click.option(
    "--stop-grace",
    type=float,
    default=10.0,
    show_default=True,
    help="On SIGTERM, how long a pass in progress may take before it is abandoned.",
)
@pass_context
def agent(ctx: CliContext, backoff_initial: float, backoff_max: float, stop_grace: float) -> None:
    """Run the controller: passes on interval, pushes, file changes and `reconcile --now`."""
    machine = _machine(ctx, need_urls=True)
    try:
        check_agent_config(machine)
    except ConfigError as exc:
        click.echo(f"pullnix: {ctx.config_path}: {exc}", err=True)
        sys.exit(1)
    telemetry.configure_logging(machine.telemetry.log_format)
    options = AgentOptions(
        backoff=BackoffPolicy(initial=backoff_initial, cap=backoff_max), stop_grace=stop_grace
    )
    try:
        code = Agent(ctx.config_path, machine, options).run()
    except (OSError, ConfigError) as exc:
        click.echo(f"pullnix: agent: {exc}", err=True)
        sys.exit(1)
    sys.exit(code)


def _table(rows: Sequence[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [f"{cell:<{w}}" for cell, w in zip(row, widths, strict=False)]
        click.echo("  ".join([*cells, row[-1]]).rstrip())


COMMANDS: list[Any] = [agent, reconcile, status, history, suspend, resume, retry, rollback]
