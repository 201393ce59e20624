"""Deployments traced into a real Jaeger, and read back through its query API.

Each test starts Jaeger v2 (all-in-one, memory storage, every listener on
127.0.0.1 at ports free at run time: tests/support/jaeger.py), points the agent
at it with nothing but the standard OTEL_* variables (OTLP over HTTP/protobuf or
gRPC), runs `pullnix reconcile --once` against the real-Nix fixture machine and
the real helper, then asks Jaeger (`/api/traces/<traceId>`, `/api/traces?...`,
`/api/services`) for what a user would open: one trace per deployment, its root
span with every step under it, the helper's phases, commit or rollback, and the
trace id `pullnix history` keeps. Every span name and attribute Jaeger shows must
be in docs/tracing.md, the contract users build searches and alerts on.
"""

from __future__ import annotations

import re
import signal
import subprocess
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from reconciler import __version__
from tests.support.agentmachine import Machine, agent_env, spec_yaml
from tests.support.jaeger import Jaeger, JaegerSpan, running_jaeger
from tests.support.nixfixture import commit_fleet

pytestmark = [pytest.mark.nix, pytest.mark.slow]
GATE = '  gates:\n    - name: closure-policy\n      command: {argv: ["/bin/true"]}\n'
DOCS = Path(__file__).resolve().parents[2] / "docs" / "tracing.md"
#: Tags Jaeger itself derives from OTLP (status, kind, scope), not pullnix's contract.
JAEGER_TAGS = re.compile(r"^(otel\.|span\.kind$|error$|internal\.|w3c\.)")


@pytest.fixture
def jaeger(tmp_path: Path) -> Iterator[Jaeger]:
    with running_jaeger(tmp_path / "jaeger") as running:
        yield running


def otel(jaeger: Jaeger, protocol: str, **more: str) -> dict[str, str]:
    return agent_env(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": jaeger.otlp_endpoint(protocol),
            "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
            "OTEL_BSP_SCHEDULE_DELAY": "50",
            **more,
        }
    )


def roots(spans: list[JaegerSpan]) -> list[JaegerSpan]:
    return [s for s in spans if not s.parent_span_id]


def children(spans: list[JaegerSpan], parent: JaegerSpan) -> list[JaegerSpan]:
    return [s for s in spans if s.parent_span_id == parent.span_id]


def has(name: str) -> Callable[[list[JaegerSpan]], bool]:
    return lambda spans: any(s.name == name for s in spans)


def deploy_trace(jaeger: Jaeger, trace_id: str, last: str) -> tuple[JaegerSpan, list[JaegerSpan]]:
    """The deploy's trace once Jaeger has its `last` span: (its one root, all its spans)."""
    spans = jaeger.wait_for_trace(trace_id, has(last), f"the deploy's {last}")
    assert [s.name for s in roots(spans)] == ["pullnix.reconcile"]  # one root: one trace
    return roots(spans)[0], spans


def assert_documented(spans: list[JaegerSpan]) -> None:
    """Every span name and attribute Jaeger shows is in docs/tracing.md."""
    docs = DOCS.read_text()
    for span in spans:
        name = "gate.<name>" if span.name.startswith("gate.") else span.name
        assert f"`{name}`" in docs, f"span {name} is not in docs/tracing.md"
        for key in list(span.tags) + [k for _, fields in span.logs for k in fields]:
            if not JAEGER_TAGS.match(key) and key != "event":
                assert f"`{key}`" in docs, f"{key} (on {span.name}) is not in docs/tracing.md"
        for event in span.events:
            assert f"`{event}`" in docs, f"event {event} is not in docs/tracing.md"


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_a_deploy_is_one_trace_in_jaeger_with_every_step_and_the_helpers_phases(
    machine: Machine, jaeger: Jaeger, protocol: str
) -> None:
    sha = commit_fleet(
        machine.repo, version="2", files={"pullnix.yaml": spec_yaml(machine.sandbox, gates=GATE)}
    )
    done = machine.reconcile(otel(jaeger, protocol))
    assert done.returncode == 0, done.stderr
    entry = machine.history()[0]
    assert (entry["revision"], entry["result"]) == (sha, "Succeeded")

    # the trace id `pullnix history` keeps finds the deploy in Jaeger
    root, spans = deploy_trace(jaeger, entry["traceId"], "helper.commit")
    assert root.trace_id == entry["traceId"]
    assert root.tags["pullnix.action"] == "Deploy"
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
    assert len(spans) == 11  # the root and its ten children, nothing else
    assert root.tags["pullnix.host"] == "edge-01"
    assert root.tags["pullnix.revision"] == root.tags["vcs.ref.head.revision"] == sha
    assert root.tags["vcs.ref.head.name"] == "main"
    assert root.tags["pullnix.outcome"] == "Progressing"

    # the resource, as OpenTelemetry's semantic conventions name it; Jaeger shows it as
    # the process: service.name is its service, the rest its tags
    assert {s.service for s in spans} == {"pullnix"}
    assert jaeger.services() == ["pullnix"]
    assert root.process_tags["service.version"] == __version__
    assert root.process_tags["host.name"] == "edge-01"

    tree = {s.name: s for s in children(spans, root)}
    built = tree["nix.build"].tags["nix.store_path"]
    assert built == machine.built(sha)
    check = tree["helper.health_check"]
    assert (
        check.tags["pullnix.check.name"],
        check.tags["pullnix.check.kind"],
        check.tags["pullnix.check.attempts"],
        check.tags["pullnix.check.ok"],
    ) == ("health-file", "command", 1, True)
    commit = tree["helper.commit"]
    assert commit.tags["pullnix.result"] == "Succeeded"
    assert commit.tags["pullnix.revision"] == sha
    assert commit.tags["nix.store_path"] == built
    assert commit.tags["nixos.generation"] == entry["generation"]
    assert commit.events == ["set-profile", "install-boot", "record"]
    # real times from the helper's journal: in order, after the pass that asked for them
    activate = tree["helper.activate"]
    assert root.start_us < tree["nix.build"].end_us <= activate.start_us < activate.end_us
    assert activate.end_us <= check.start_us < check.end_us <= commit.start_us
    assert not [s.name for s in spans if s.error]

    # one trace per deployment: the helper's spans of this operation are in no other
    operation = {"pullnix.operation.id": entry["operationId"]}
    assert [t[0].trace_id for t in jaeger.search("pullnix", **operation)] == [root.trace_id]
    # the pass that learnt the verdict is a trace of its own, linked to the deploy's
    verdicts = [
        t
        for t in jaeger.search("pullnix", **{"pullnix.result": "Succeeded"})
        if t[0].trace_id != root.trace_id
    ]
    assert len(verdicts) == 1
    (verdict,) = roots(verdicts[0])
    assert (root.trace_id, root.span_id) in verdict.links
    assert verdict.tags["pullnix.outcome"] == "Succeeded"
    assert verdict.tags["nix.store_path"] == built
    assert_documented(spans + verdicts[0])


def test_a_rollback_shows_the_failed_check_and_the_rollback_with_its_reason(
    machine: Machine, jaeger: Jaeger
) -> None:
    sha = commit_fleet(machine.repo, version="2", health="broken")
    env = otel(
        jaeger,
        "http/protobuf",
        OTEL_SERVICE_NAME="fleet-agent",
        OTEL_RESOURCE_ATTRIBUTES="deployment.environment=test",
    )
    done = machine.reconcile(env)
    assert done.returncode == 3, done.stderr
    entry = machine.history()[0]
    assert (entry["revision"], entry["result"]) == (sha, "RolledBack")

    root, spans = deploy_trace(jaeger, entry["traceId"], "helper.rollback")
    names = [s.name for s in children(spans, root)]
    assert names[-3:] == ["helper.activate", "helper.health_check", "helper.rollback"]
    assert "helper.commit" not in names
    tree = {s.name: s for s in children(spans, root)}
    check, rollback = tree["helper.health_check"], tree["helper.rollback"]
    assert check.error
    assert check.tags["pullnix.check.name"] == "health-file"
    assert check.tags["pullnix.check.ok"] is False
    assert rollback.error
    assert "health-file" in rollback.status_message
    assert "health-file" in rollback.tags["pullnix.rollback.reason"]
    assert rollback.tags["pullnix.result"] == "RolledBack"
    # (a trial touched neither the profile nor the boot entry: only the running system)
    assert rollback.events == ["reactivate"]
    assert check.end_us <= rollback.start_us < rollback.end_us
    # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES are honoured; the version is pullnix's
    assert jaeger.services() == ["fleet-agent"]
    assert root.process_tags["deployment.environment"] == "test"
    assert root.process_tags["service.version"] == __version__

    # an alert on rollbacks finds this deploy by its stable attribute names (Jaeger
    # matches all the tags of a search on one span: here helper.rollback)
    found = jaeger.search(
        "fleet-agent", **{"pullnix.result": "RolledBack", "pullnix.revision": sha}
    )
    assert root.trace_id in {t[0].trace_id for t in found}
    # the pass that learnt it is a trace of its own, failed with the reason
    verdicts = [
        r
        for t in jaeger.search("fleet-agent", **{"pullnix.result": "RolledBack"})
        for r in roots(t)
        if r.trace_id != root.trace_id
    ]
    assert verdicts
    assert all(v.error and v.status_message.startswith("RolledBack: ") for v in verdicts)
    assert any((root.trace_id, root.span_id) in v.links for v in verdicts)
    assert_documented(spans)


def test_a_deploy_across_an_agent_restart_stays_one_trace(machine: Machine, jaeger: Jaeger) -> None:
    slow = '["/bin/sh", "-c", "sleep 3"]'
    commit_fleet(
        machine.repo,
        version="2",
        files={"pullnix.yaml": spec_yaml(machine.sandbox, check_argv=slow)},
    )
    env = otel(jaeger, "grpc")
    first = subprocess.Popen(
        machine.reconcile_argv(), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        started = jaeger.wait_until(
            lambda: jaeger.search("pullnix", **{"pullnix.action": "Deploy"}),
            "the deploy's root span",
            timeout=120,
        )
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert machine.helper.client.status()["busy"]  # the apply outlives the agent
    (deploy,) = started
    (root,) = roots(deploy)
    assert not [s for s in deploy if s.name.startswith("helper.")]

    second = machine.reconcile(env)
    assert second.returncode == 0, second.stderr
    entry = machine.history()[0]
    assert (entry["traceId"], entry["result"]) == (root.trace_id, "Succeeded")
    again, spans = deploy_trace(jaeger, root.trace_id, "helper.commit")
    assert again.span_id == root.span_id
    helper_spans = [s for s in spans if s.name.startswith("helper.")]
    # (no helper.confirm when the confirmation came while the check still ran)
    assert {s.name for s in helper_spans} - {"helper.confirm"} == {
        "helper.activate",
        "helper.health_check",
        "helper.commit",
    }
    assert {s.parent_span_id for s in helper_spans} == {root.span_id}
    operation = {"pullnix.operation.id": entry["operationId"]}
    assert [t[0].trace_id for t in jaeger.search("pullnix", **operation)] == [root.trace_id]


def test_history_links_each_deploy_to_its_trace_in_jaeger(machine: Machine, jaeger: Jaeger) -> None:
    machine.configure(trace_url=f"{jaeger.query}/trace/{{traceId}}")
    sha = commit_fleet(machine.repo, version="2")
    done = machine.reconcile(otel(jaeger, "http/protobuf"))
    assert done.returncode == 0, done.stderr
    (entry, *_) = machine.history()
    link = f"{jaeger.query}/trace/{entry['traceId']}"
    assert entry["traceUrl"] == link
    wide = machine.cli("history", "--wide")
    assert wide.returncode == 0, wide.stderr
    row = next(line for line in wide.stdout.splitlines() if sha in line)
    assert link in row.split()
    # the link opens in Jaeger's UI, and the same server's API has the trace
    with urllib.request.urlopen(link, timeout=10) as page:
        assert page.status == 200
        assert "text/html" in page.headers["Content-Type"]
    deploy_trace(jaeger, entry["traceId"], "helper.commit")
