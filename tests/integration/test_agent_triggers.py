"""What wakes `pullnix agent`: signed webhooks (and nothing else that claims to be one),
bursts coalesced, and the local API's peer check.

The remote is served by `git daemon`, not file://, so no file watcher can start a
pass: every pass after the first is the webhook's (or the helper's, while it works).
The interval is an hour.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from reconciler.core.webhook_events import sign
from tests.support.agentmachine import Machine, fake_machine, wait_for
from tests.support.gitserve import GitDaemon, free_port
from tests.support.nixfixture import commit_fleet, read_calls
from tests.support.peer import as_nobody, open_to_everyone
from tests.support.slowloris import closed_by_peer, half_open, open_files, threads

pytestmark = [pytest.mark.nix, pytest.mark.slow]
SECRET = "hook-secret"


@dataclass
class Served:
    machine: Machine
    port: int
    daemon: GitDaemon

    def post(self, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, object]]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/hooks/pullnix", data=body, headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def push_event(self, sha: str, *, secret: str = SECRET) -> tuple[bytes, dict[str, str]]:
        body = json.dumps({"ref": "refs/heads/main", "after": sha}).encode()
        return body, {
            "X-GitHub-Event": "push",
            "Content-Type": "application/json",
            "X-Hub-Signature-256": f"sha256={sign(secret.encode(), body)}",
        }

    def webhook_passes(self) -> int:
        """Passes the agent's log says a webhook started."""
        starts = re.findall(r"pass \d+ starts \(([^)]*)\)", self.machine.agents[0].log_text())
        return sum("webhook" in reasons.split(", ") for reasons in starts)


def verdicts(agent: dict[str, Any]) -> dict[str, int]:
    """The webhook's verdict counts from the agent's status (beside its connection counts)."""
    return {k: agent["webhook"][k] for k in ("queued", "ignored", "refused")}


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    port = free_port()
    with fake_machine(tmp_path) as machine, GitDaemon.serving(tmp_path) as daemon:
        machine.configure(
            urls=[daemon.url("fleet.git")],
            webhook_listen=f"127.0.0.1:{port}",
            webhook_secret=SECRET,
        )
        machine.start_agent()
        machine.wait_idle()
        yield Served(machine, port, daemon)


def test_unsigned_or_wrongly_signed_pushes_get_401_and_queue_nothing(served: Served) -> None:
    machine = served.machine
    before = (machine.passes(), machine.current(), len(read_calls(machine.sandbox)))
    sha = commit_fleet(machine.repo, version="2")
    body, good = served.push_event(sha)

    forged = served.post(body, {**good, "X-Hub-Signature-256": "sha256=" + "0" * 64})
    other_secret = served.post(*served.push_event(sha, secret="not-the-secret"))
    unsigned = served.post(body, {"X-GitHub-Event": "push"})
    gitlab_wrong = served.post(body, {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": "x"})

    assert [a[0] for a in (forged, other_secret, unsigned, gitlab_wrong)] == [401] * 4
    assert forged[1] == {"error": "X-Hub-Signature-256 does not match"}
    assert "no signature" in str(unsigned[1]["error"])
    agent = machine.agent_status()
    assert verdicts(agent) == {"queued": 0, "ignored": 0, "refused": 4}
    assert not agent["running"]
    assert (machine.passes(), machine.current(), len(read_calls(machine.sandbox))) == before
    assert "refused a webhook from 127.0.0.1" in machine.agents[0].log_text()

    # The same push, signed: the agent fetches, deploys and says why it ran.
    assert served.post(body, good) == (202, {"status": "queued", "forge": "github"})
    wait_for(lambda: machine.current() == machine.built(sha), 120, "the signed push to deploy")
    machine.wait_idle()
    assert machine.status()["status"]["lastAppliedRevision"] == sha
    assert served.webhook_passes() == 1


def test_events_that_are_not_a_push_to_the_branch_are_ignored(served: Served) -> None:
    machine = served.machine
    before = machine.passes()
    body = json.dumps({"ref": "refs/heads/feature", "after": "f" * 40}).encode()
    elsewhere = served.post(
        body, {"X-Gitea-Event": "push", "X-Gitea-Signature": sign(SECRET.encode(), body)}
    )
    ping = served.post(
        b"{}",
        {"X-GitHub-Event": "ping", "X-Hub-Signature-256": f"sha256={sign(SECRET.encode(), b'{}')}"},
    )
    assert elsewhere == (
        202,
        {"status": "ignored", "reason": "a push to refs/heads/feature, not refs/heads/main"},
    )
    assert ping == (202, {"status": "ignored", "reason": "ping event is not a push"})
    assert verdicts(machine.agent_status()) == {"queued": 0, "ignored": 2, "refused": 0}
    assert machine.passes() == before


def test_a_hundred_pushes_in_a_second_cost_at_most_two_passes(served: Served) -> None:
    """The burst arrives while the first push's pass runs, however slow the machine: the
    remote is held still (git daemon stopped) from that pass's start until the last push is
    answered, so the 99 others can only coalesce into the one pass after it."""
    machine = served.machine
    sha = commit_fleet(machine.repo, version="2")
    body, headers = served.push_event(sha)
    with served.daemon.paused():
        first = served.post(body, headers)[0]
        wait_for(lambda: machine.agent_status()["running"], 60, "the first push's pass to start")
        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = [first, *pool.map(lambda _: served.post(body, headers)[0], range(99))]
    assert answers == [202] * 100
    wait_for(lambda: machine.current() == machine.built(sha), 120, "the push to deploy")
    machine.wait_idle()
    assert machine.agent_status()["webhook"]["queued"] == 100
    assert 1 <= served.webhook_passes() <= 2
    switches = [c for c in read_calls(machine.sandbox) if c["toplevel"] == machine.built(sha)]
    assert [c["action"] for c in switches] == ["test", "boot"]  # one trial, one commit


def test_an_oversized_or_unsized_body_is_refused_before_it_is_read(served: Served) -> None:
    big = served.post(b"x" * (1024 * 1024 + 1), {"X-GitHub-Event": "push"})
    assert big[0] == 413
    assert served.machine.agent_status()["webhook"]["queued"] == 0


def test_two_hundred_half_open_connections_leave_the_agent_bounded_and_deploying(
    served: Served,
) -> None:
    # 200 connections that never finish their headers: the agent holds at most its cap
    # of them (16) at a time, a signed push still gets in and deploys, the local API
    # answers, and every one of the 200 is closed by the agent by its deadline (10 s).
    machine = served.machine
    pid = machine.agents[0].pid
    idle = {"threads": threads(pid), "files": open_files(pid)}
    peak = dict(idle)

    def sample() -> None:
        peak["threads"] = max(peak["threads"], threads(pid))
        peak["files"] = max(peak["files"], open_files(pid))

    with half_open(served.port, 200, sample) as socks:
        assert peak["threads"] <= idle["threads"] + 16 + 2, (idle, peak)
        assert peak["files"] <= idle["files"] + 16 + 2, (idle, peak)
        sha = commit_fleet(machine.repo, version="2")
        assert served.post(*served.push_event(sha))[0] == 202
        wait_for(lambda: machine.current() == machine.built(sha), 120, "the push to deploy")
        wait_for(lambda: all(closed_by_peer(s) for s in socks), 60, "the 200 to be closed")
    machine.wait_idle()
    assert served.webhook_passes() == 1
    counts = machine.agent_status()["webhook"]
    assert counts["queued"] == 1
    # Each of the 200 was shed for a newcomer, turned away, or cut at its deadline.
    assert counts["shed"] + counts["turnedAway"] + counts["timedOut"] == 200, counts


def test_the_local_api_refuses_a_peer_that_is_not_root_nor_an_agent_uid(served: Served) -> None:
    machine = served.machine
    open_to_everyone(machine.agent_socket)
    answer = as_nobody(machine.agent_socket, b'{"v": 1, "op": "suspend"}\n')
    assert answer.get("ok") is False, answer
    assert answer["error"] == "forbidden"
    assert "65534" in str(answer["message"])
    assert machine.condition("Ready")["reason"] != "Suspended"
    assert machine.api.request("status")["ok"] is True  # root still gets in
