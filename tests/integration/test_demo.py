"""`pullnix demo` runs to the end as the README promises, and tells the truth about what ran."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.support.jaeger import running_jaeger

pytestmark = [pytest.mark.nix, pytest.mark.slow]
PULLNIX = Path(sys.executable).with_name("pullnix")


def demo(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PULLNIX), "demo", "--dir", str(tmp_path / "demo"), *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, **env},
        stdin=subprocess.DEVNULL,
    )


def test_the_demo_converges_then_rolls_back_a_broken_push_and_links_its_traces_in_jaeger(
    tmp_path: Path,
) -> None:
    with running_jaeger(tmp_path / "jaeger") as jaeger:
        endpoint = jaeger.otlp_endpoint("http/protobuf")
        done = demo(
            tmp_path,
            "--jaeger-ui",
            jaeger.query,
            OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
            OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        )
        out = done.stdout
        assert done.returncode == 0, out + done.stderr
        assert "\x1b[" not in out  # not a terminal: plain lines, no colour, no spinner

        # the acts, in order, each with what the agent and the helper reported
        acts = [out.index(a) for a in ("== Setting the stage", "== Act 1", "== Act 2", "== Act 3")]
        assert acts == sorted(acts)
        act1, act2 = out[acts[1] : acts[2]], out[acts[2] : acts[3]]
        assert re.search(r"helper +apply \w+: Succeeded: committed generation 2", act1)
        assert re.search(r"agent +pass \d+ \(source\)", act1)  # watchfiles saw the push
        assert "health check app-health (command) failed" in act2
        assert re.search(r"helper +apply \w+: RolledBack", act2)
        assert "rolled back by itself" in act2

        # what an operator sees, and the hook
        assert "$ pullnix status" in out
        assert re.search(r"Ready +False +RolledBack", out)
        assert "Succeeded" in out.split("$ pullnix history")[1]
        assert re.search(r"^RolledBack [0-9a-f]{40} generation $", out, re.M)

        # each deploy's link opens its trace in this Jaeger, newest first
        assert f"sent over OTLP to {endpoint}" in out
        links = re.findall(r"^  (Succeeded|RolledBack) +([0-9a-f]{12})  (\S+)$", out, re.M)
        assert [result for result, _, _ in links] == ["RolledBack", "Succeeded", "Succeeded"]
        for result, revision, link in links:
            base, _, trace_id = link.rpartition("/trace/")
            assert base == jaeger.query
            assert re.fullmatch(r"[0-9a-f]{32}", trace_id)
            with urllib.request.urlopen(link, timeout=10) as page:
                assert page.status == 200
            last = "helper.rollback" if result == "RolledBack" else "helper.commit"
            spans = jaeger.wait_for_trace(
                trace_id, lambda s, last=last: any(x.name == last for x in s), last
            )
            assert {s.tags.get("pullnix.revision", "")[:12] for s in spans} >= {revision}
    assert (tmp_path / "demo" / "agent.log").exists()  # --dir keeps the sandbox


def test_the_demo_says_what_is_missing_instead_of_failing_obscurely(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(PULLNIX), "demo"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PATH": str(tmp_path)},
    )
    assert done.returncode == 1
    assert "Nix is not installed: `apt-get install nix-bin`" in done.stdout
