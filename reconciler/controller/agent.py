"""`pullnix agent`: the long-running controller, assembled from its parts.

Owns the agent's life: start telemetry (logging, tracing, metrics, sd_notify),
the worker (`loop.PassLoop`), the triggers (file watchers, the webhook
receiver) and the local API; swap the triggers when the machine config
changes; stop cleanly on SIGTERM or SIGINT. Stopping abandons a pass in
progress after `stop_grace` seconds: that is safe, because the helper owns the
switch and a new agent picks up where this one left (it confirms a generation
it runs in, it ingests finished operations). Also the `Control` the local API
calls: reconcile (and follow it), status, suspend, resume, retry, rollback.

Must not: decide anything about the machine, or run a pass outside the worker.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from reconciler import telemetry
from reconciler.common.clock import utc_stamp
from reconciler.common.config import ConfigError, MachineConfig
from reconciler.controller.commands import Commands
from reconciler.controller.localapi import ApiError, LocalApi
from reconciler.controller.loop import ConfigLoader, PassLoop, PassReport
from reconciler.controller.store import StateStore
from reconciler.controller.triggers import FileWatcher, Wakeup, watch_plan
from reconciler.core.schedule import BackoffPolicy

if TYPE_CHECKING:
    from reconciler.controller.webhook import WebhookReceiver

log = logging.getLogger("pullnix.agent")


@dataclass(frozen=True)
class AgentOptions:
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)
    stop_grace: float = 10.0  # seconds a pass in progress may take to finish on SIGTERM


def check_agent_config(machine: MachineConfig) -> None:
    """What the agent needs beyond the loader's checks; ConfigError when missing."""
    if machine.triggers.webhook_listen:
        from reconciler.controller.webhook import parse_listen, read_secret

        parse_listen(machine.triggers.webhook_listen)
        read_secret(machine)
    if machine.telemetry.metrics_listen:
        try:
            telemetry.parse_metrics_listen(machine.telemetry.metrics_listen)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None


class Agent:
    def __init__(self, config_path: Path, machine: MachineConfig, options: AgentOptions) -> None:
        self.config_path = config_path
        self.machine = machine
        self.options = options
        self.started_at = utc_stamp()
        self.stop_event = threading.Event()
        self.wake = Wakeup()
        self.watcher: FileWatcher | None = None
        self.webhook: WebhookReceiver | None = None
        self.api: LocalApi | None = None
        self.loop = PassLoop(
            machine,
            self.wake,
            config=ConfigLoader(config_path, check_agent_config),
            on_config=self._config_changed,
            on_pass=self._pass_done,
            journal_watched=self._journal_watched,
            backoff=options.backoff,
        )

    # -- life -------------------------------------------------------------------------

    def run(self) -> int:
        """Until SIGTERM/SIGINT; the exit status (0: stopped cleanly)."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        telemetry.start_metrics_server(self.machine.telemetry.metrics_listen)
        self.api = LocalApi(self.machine.agent.socket, self.machine.helper.agent_uids, self)
        self._start_triggers(self.machine)
        self.api.start()
        worker = threading.Thread(
            target=self.loop.run, args=(self.stop_event,), name="reconcile", daemon=True
        )
        worker.start()
        telemetry.notify_ready(f"watching {', '.join(self.machine.source.urls)}")
        watchdog = telemetry.watchdog_interval()
        while not self.stop_event.wait(watchdog or 1.0):
            if worker.is_alive():
                telemetry.notify_watchdog()
        log.info("stopping")
        telemetry.notify_stopping("stopping")
        self.loop.stop()
        self.api.stop()
        self._stop_triggers()
        worker.join(self.options.stop_grace)
        if worker.is_alive():
            log.warning("abandoning the pass in progress (the helper carries on by itself)")
        telemetry.shutdown_tracing()
        return 0

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        log.info("received %s", signal.Signals(signum).name)
        self.stop_event.set()
        self.wake.fire("stop")

    def _start_triggers(self, machine: MachineConfig) -> None:
        self.watcher = FileWatcher(watch_plan(machine, self.config_path), self.wake.fire)
        self.watcher.start()
        if machine.triggers.webhook_listen:
            # Imported here: its http.server costs an agent without a webhook about 1 MB.
            from reconciler.controller.webhook import WebhookReceiver

            self.webhook = WebhookReceiver(machine, self.wake.fire)
            self.webhook.start()

    def _stop_triggers(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
            self.watcher = None
        if self.webhook is not None:
            self.webhook.stop()
            self.webhook = None

    def _config_changed(self, old: MachineConfig, new: MachineConfig) -> None:
        """From the worker, between passes: the triggers, the log format and the metrics
        listener follow the new config."""
        self.machine = new
        self._stop_triggers()
        try:
            self._start_triggers(new)
        except ConfigError as exc:  # e.g. the port is taken now
            log.error("%s", exc)
            self.loop.config_error = str(exc)
        if old.agent.socket != new.agent.socket:
            log.warning(
                "agent.socket changed to %s: takes effect when the agent restarts", new.agent.socket
            )
        if old.telemetry.log_format != new.telemetry.log_format:
            telemetry.configure_logging(new.telemetry.log_format)
            log.info("log format is now %s", new.telemetry.log_format)
        if old.telemetry.metrics_listen != new.telemetry.metrics_listen:
            telemetry.stop_metrics_servers()  # the counts live on: only the listener moves
            try:
                telemetry.start_metrics_server(new.telemetry.metrics_listen)
            except OSError as exc:  # e.g. the port is taken
                log.error("telemetry.metrics_listen %s: %s", new.telemetry.metrics_listen, exc)

    def _journal_watched(self) -> bool:
        return self.watcher is not None and self.watcher.journal_watched

    def _pass_done(self, report: PassReport) -> None:
        result = report.result
        telemetry.observe_pass(result.outcome.phase, report.seconds, result.exit_code)
        telemetry.notify_status(f"{result.outcome.phase}: {result.outcome.message}")

    # -- the local API's Control ------------------------------------------------------

    def status(self) -> dict[str, Any]:
        agent = {
            "pid": os.getpid(),
            "startedAt": self.started_at,
            "configPath": str(self.config_path),
            **self.loop.snapshot(),
            "triggersFired": self.wake.fired,
            "watching": [str(w.directory) for w in self.watcher.plan] if self.watcher else [],
            "webhook": self.webhook.counts if self.webhook else None,
        }
        return {"status": StateStore(self.machine.state_dir).load_status(), "agent": agent}

    def reconcile(self, wait: bool, timeout: float) -> dict[str, Any]:
        target = self.loop.request_pass("now")
        if not wait:
            return {"queued": True, "pass": target}
        return self._follow(target, timeout)

    def suspend(self) -> dict[str, Any]:
        return self.commands.suspend()

    def resume(self) -> dict[str, Any]:
        return self.commands.resume()

    def retry(self) -> dict[str, Any]:
        return self.commands.retry()

    def rollback(self, wait: bool, timeout: float) -> dict[str, Any]:
        return self.commands.rollback(wait, timeout)

    @property
    def commands(self) -> Commands:
        """The commands, run by this agent: record changes wait for the pass in progress."""
        return Commands(
            self.machine,
            self.loop.change_record,
            started=self._rollback_started,
            finished=self._rollback_finished,
        )

    def _rollback_started(self) -> None:
        log.info("rollback requested")
        self.loop.request_pass("helper")

    def _rollback_finished(self, seconds_left: float) -> None:
        # The pass after the operation folds it into the record (the revision left behind
        # is marked rolled back), so the answer comes after that.
        self._follow(self.loop.request_pass("helper"), seconds_left)

    def _follow(self, target: int, timeout: float) -> dict[str, Any]:
        report = self.loop.wait_settled(target, timeout)
        if report is None:
            if self.stop_event.is_set():
                raise ApiError("stopping", "the agent is stopping; ask again when it is back")
            raise ApiError(
                "timeout",
                f"no verdict after {timeout:g}s; the pass or the "
                "helper's operation is still under way",
            )
        r = report.result
        return {
            "exitCode": r.exit_code,
            "phase": r.outcome.phase,
            "reason": r.outcome.reason,
            "message": r.outcome.message,
            "pass": report.to_json(),
        }
