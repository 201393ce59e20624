"""Traces of `pullnix reconcile --once` as a real OTLP collector receives them.

The agent runs as a subprocess with only the standard OTEL_* variables
pointing at a receiver of tests/support/otlp.py (HTTP/protobuf or gRPC); the
helper is the real process and the machine is the real-Nix fixture. The
tests assert the span tree a user sees in Jaeger: one root per pass, its
steps, and the helper's phases rebuilt under the trace of the pass that
started the deploy, even across an agent that was killed mid-deploy.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider

from reconciler.telemetry import metrics
from reconciler.telemetry.export import counting_processor, otlp_exporter
from reconciler.telemetry.settings import DEFAULT_EXPORT_TIMEOUT, export_settings
from tests.support.agentmachine import Machine, fake_machine, spec_yaml
from tests.support.nixfixture import commit_fleet
from tests.support.otlp import (
    STATUS_ERROR,
    GrpcReceiver,
    HttpReceiver,
    ReceivedSpan,
    by_name,
    children,
    closed_port,
)

pytestmark = [pytest.mark.nix, pytest.mark.slow]
GATE = '  gates:\n    - name: closure-policy\n      command: {argv: ["/bin/true"]}\n'


def agent_env(otel: Mapping[str, str] | None) -> dict[str, str]:
    """This environment without any OTEL_* of its own, plus `otel`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    return {**env, **(otel or {})}


def http_env(receiver: HttpReceiver | GrpcReceiver, **more: str) -> dict[str, str]:
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_SERVICE_NAME": "pullnix-test",
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=test",
        "OTEL_BSP_SCHEDULE_DELAY": "50",
        **more,
    }


@pytest.fixture
def machine(tmp_path: Path) -> Iterator[Machine]:
    with fake_machine(tmp_path) as first:
        assert first.reconcile(agent_env(None)).returncode == 0  # converged, untraced
        yield first


def deploy_root(spans: list[ReceivedSpan]) -> ReceivedSpan | None:
    return next(
        (
            s
            for s in by_name(spans, "pullnix.reconcile")
            if s.attributes.get("pullnix.action") == "Deploy"
        ),
        None,
    )


def tree_done(spans: list[ReceivedSpan], last: str) -> bool:
    root = deploy_root(spans)
    return root is not None and any(s.name == last and s.trace_id == root.trace_id for s in spans)


def test_a_deploy_is_one_trace_with_every_step_and_the_helpers_phases(machine: Machine) -> None:
    sha = commit_fleet(
        machine.repo, version="2", files={"pullnix.yaml": spec_yaml(machine.sandbox, gates=GATE)}
    )
    with HttpReceiver() as receiver:
        done = machine.reconcile(agent_env(http_env(receiver)))
        assert done.returncode == 0, done.stderr
        spans = receiver.wait_for(lambda s: tree_done(s, "helper.commit"))
    root = deploy_root(spans)
    assert root is not None
    assert root.parent_span_id == ""
    assert [s.name for s in children(spans, root)] == [
        "source.fetch",
        "source.verify",
        "spec.load",
        "system.observe",
        "nix.build",
        "gate.closure-policy",
        "helper.activate",
        "helper.health_check",
        "helper.confirm",
        "helper.commit",
    ]
    assert {s.trace_id for s in spans if s.name.startswith("helper.")} == {root.trace_id}
    assert root.attributes["host.name"] == "edge-01"
    assert root.attributes["vcs.ref.head.name"] == "main"
    assert root.attributes["vcs.ref.head.revision"] == sha
    assert root.attributes["pullnix.outcome"] == "Progressing"
    assert root.resource["service.name"] == "pullnix-test"
    assert root.resource["deployment.environment"] == "test"

    tree = {s.name: s for s in children(spans, root)}
    built = tree["nix.build"].attributes["nix.store_path"]
    assert str(built).startswith("/nix/store/")
    check = tree["helper.health_check"]
    assert (
        check.attributes["pullnix.check.name"],
        check.attributes["pullnix.check.kind"],
        check.attributes["pullnix.check.attempts"],
    ) == ("health-file", "command", 1)
    commit = tree["helper.commit"]
    assert commit.attributes["pullnix.outcome"] == "Succeeded"
    assert commit.attributes["nix.store_path"] == built
    assert isinstance(commit.attributes["nixos.generation"], int)
    assert [e[0] for e in commit.events] == ["set-profile", "install-boot", "record"]
    # real times from the helper's journal: in order, after the pass that asked for them
    activate = tree["helper.activate"]
    assert root.start_ns < tree["nix.build"].end_ns <= activate.start_ns < activate.end_ns
    assert activate.end_ns <= check.start_ns < check.end_ns <= commit.start_ns < commit.end_ns
    assert all(s.status_code != STATUS_ERROR for s in children(spans, root))

    # the trace id is in the history, and the pass that learnt the outcome links to it
    assert machine.history()[0]["traceId"] == root.trace_id
    later = [s for s in by_name(spans, "pullnix.reconcile") if s.trace_id != root.trace_id]
    assert any((root.trace_id, root.span_id) in s.links for s in later)
    final = max(later, key=lambda s: s.end_ns)
    assert final.attributes["pullnix.outcome"] == "Succeeded"
    assert final.attributes["nix.store_path"] == built


def test_a_rollback_shows_the_failed_check_and_the_rollback_as_errors(machine: Machine) -> None:
    commit_fleet(machine.repo, version="2", health="broken")
    with HttpReceiver() as receiver:
        done = machine.reconcile(agent_env(http_env(receiver)))
        assert done.returncode == 3, done.stderr
        spans = receiver.wait_for(lambda s: tree_done(s, "helper.rollback"))
    root = deploy_root(spans)
    assert root is not None
    names = [s.name for s in children(spans, root)]
    assert names[-3:] == ["helper.activate", "helper.health_check", "helper.rollback"]
    tree = {s.name: s for s in children(spans, root)}
    check, rollback = tree["helper.health_check"], tree["helper.rollback"]
    assert check.status_code == STATUS_ERROR
    assert check.attributes["pullnix.check.name"] == "health-file"
    assert rollback.status_code == STATUS_ERROR
    assert "health-file" in rollback.status_message
    assert rollback.attributes["pullnix.outcome"] == "RolledBack"
    assert check.end_ns <= rollback.start_ns < rollback.end_ns
    history = machine.history()[0]
    assert (history["result"], history["traceId"]) == ("RolledBack", root.trace_id)
    verdict = max(by_name(spans, "pullnix.reconcile"), key=lambda s: s.end_ns)
    assert verdict.status_code == STATUS_ERROR
    assert verdict.status_message.startswith("RolledBack: ")


def test_a_deploy_across_an_agent_restart_stays_one_trace(machine: Machine) -> None:
    slow = '["/bin/sh", "-c", "sleep 3"]'
    commit_fleet(
        machine.repo,
        version="2",
        files={"pullnix.yaml": spec_yaml(machine.sandbox, check_argv=slow)},
    )
    with HttpReceiver() as receiver:
        env = agent_env(http_env(receiver))
        first = subprocess.Popen(
            machine.reconcile_argv(), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            spans = receiver.wait_for(lambda s: deploy_root(s) is not None, timeout=120)
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait()
        assert machine.helper.client.status()["busy"]  # the apply outlives the agent
        assert not [s for s in receiver.spans() if s.name.startswith("helper.")]
        root = deploy_root(spans)
        assert root is not None

        second = machine.reconcile(agent_env(http_env(receiver)))
        assert second.returncode == 0, second.stderr
        spans = receiver.wait_for(lambda s: tree_done(s, "helper.commit"))
    helper_spans = [s for s in spans if s.name.startswith("helper.")]
    # (no helper.confirm when the confirmation came while the check still ran)
    assert {s.name for s in helper_spans} - {"helper.confirm"} == {
        "helper.activate",
        "helper.health_check",
        "helper.commit",
    }
    assert {(s.trace_id, s.parent_span_id) for s in helper_spans} == {(root.trace_id, root.span_id)}
    assert machine.history()[0]["traceId"] == root.trace_id


def test_traces_reach_a_grpc_collector(machine: Machine) -> None:
    with GrpcReceiver() as receiver:
        grpc = http_env(receiver, OTEL_EXPORTER_OTLP_PROTOCOL="grpc")
        done = machine.reconcile(agent_env(grpc))
        assert done.returncode == 0, done.stderr
        spans = receiver.wait_for(lambda s: bool(by_name(s, "pullnix.reconcile")))
    root = by_name(spans, "pullnix.reconcile")[0]
    assert root.attributes["pullnix.outcome"] == "Succeeded"
    assert [s.name for s in children(spans, root)] == [
        "source.fetch",
        "source.verify",
        "spec.load",
        "system.observe",
    ]


def test_a_collector_that_is_down_neither_fails_nor_holds_up_a_pass(machine: Machine) -> None:
    def timed(otel: Mapping[str, str] | None) -> float:
        started = time.monotonic()
        done = machine.reconcile(agent_env(otel))
        assert done.returncode == 0, done.stderr
        return time.monotonic() - started

    untraced = min(timed(None) for _ in range(2))
    down = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{closed_port()}"}
    traced = timed(down)
    assert traced - untraced < DEFAULT_EXPORT_TIMEOUT + 1.0, (traced, untraced)
    grpc_down = timed({**down, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
    assert grpc_down - untraced < DEFAULT_EXPORT_TIMEOUT + 1.0, (grpc_down, untraced)


def dropped(reason: str) -> float:
    return (
        metrics.registry().get_sample_value("pullnix_trace_spans_dropped_total", {"reason": reason})
        or 0.0
    )


def test_every_span_a_hung_collector_never_gets_is_counted_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The agent's processor and real exporter, in this process, against a collector that
    takes connections and never answers, then goes away; the queue holds 4
    (OTEL_BSP_MAX_QUEUE_SIZE alone, below the SDK's export batch size of 512)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(8)  # the kernel accepts; nobody reads or answers
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{hung.getsockname()[1]}",
            "OTEL_BSP_MAX_QUEUE_SIZE": "4",
        }
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        settings = export_settings(env)
        assert settings is not None
        assert (settings.max_queue_size, settings.max_export_batch_size) == (4, 4)
        provider = TracerProvider(shutdown_on_exit=False)
        provider.add_span_processor(counting_processor(otlp_exporter(settings), settings))
        before = {reason: dropped(reason) for reason in ("queue_full", "export_failed")}
        tracer = provider.get_tracer("test")
        for n in range(20):
            tracer.start_span(f"span-{n}").end()
        # no export can have finished: at most a batch in flight and a full queue
        assert dropped("queue_full") - before["queue_full"] >= 20 - 4 - 4
    provider.shutdown()  # the collector is gone now: what is queued fails too
    full = dropped("queue_full") - before["queue_full"]
    failed = dropped("export_failed") - before["export_failed"]
    assert full + failed == 20
    assert failed >= 4
