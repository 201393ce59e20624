"""Benchmark: the helper's footprint and its overhead around a switch, against bare baselines.

Measures, with the real `pullnix-helper` program and the real-Nix fixture:

- idle RSS of a listening helper, against a bare `python3 -c 'import time;
  time.sleep(60)'` (the interpreter's own floor); target <= 20 MB. Twice: just
  started (before any operation loaded the check machinery), and in steady
  state, idle after an `apply` that ran an http health check (urllib, the
  health module and the operation's threads have been loaded by then);
- start to listening (process start until a ping is answered) and to ready
  (until `status` is: the operation machinery loads after the socket answers),
  against a bare `python3 -c pass` run to exit; target <= 150 ms;
- one `apply` (no checks, trial off, action switch) from request to outcome
  known, against the same commands by hand (`switch-to-configuration switch`,
  `nix-env -p PROFILE --set`, `switch-to-configuration boot`), and against
  `switch-to-configuration switch` alone; target <= 50 ms over the reference.

Each number is a median; the two sides alternate so drift hits both alike.
The helper is byte-compiled first (`compile_helper`), as its package ships it.
Run it as `python -m bench.bench_helper [N]`; `rows()` is the entry point for
the combined benchmark runner. Not a test.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from reconciler.common.client import HelperClient, HelperUnavailable
from tests.support.helperproc import (
    HELPER_BIN,
    FakeMachine,
    build_machine,
    cleanup_socket_dir,
    start_helper,
    write_helper_config,
)
from tests.support.nixfixture import OFFLINE_NIX_CONFIG


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def _idle_rss(tmp: Path) -> tuple[float, float]:
    paths = write_helper_config(tmp / "rss")
    helper = start_helper(paths)
    try:
        helper.client.status()
        time.sleep(0.3)
        ours = rss_mb(helper.pid)
    finally:
        helper.stop()
        cleanup_socket_dir(paths)
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as bare:
        time.sleep(0.3)
        reference = rss_mb(bare.pid)
        bare.kill()
    return ours, reference


class _Healthy(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"ok\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _steady_rss(machine: FakeMachine, tmp: Path) -> float:
    """Idle RSS after an apply whose http check ran: what a helper sits on for good."""
    machine.reset()
    paths = write_helper_config(tmp / "steady", machine.sandbox)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Healthy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    check = {
        "name": "http",
        "timeout": 5,
        "http": {"url": f"http://127.0.0.1:{server.server_address[1]}/", "bodyRegex": "^ok"},
    }
    helper = start_helper(paths)
    try:
        result = helper.client.wait(
            helper.client.apply(machine.systems["new"], trial=True, health_checks=[check])
        )
        assert result["state"] == "Succeeded", result["message"]
        assert [c["kind"] for c in result["checks"] if c["ok"]] == ["http"], result["checks"]
        time.sleep(0.3)
        return rss_mb(helper.pid)
    finally:
        helper.stop()
        cleanup_socket_dir(paths)
        server.shutdown()
        server.server_close()


def _start_to_listening(tmp: Path, runs: int) -> tuple[list[float], list[float], list[float]]:
    """Process start until ping is answered, and until status is (the operator attached)."""
    paths = write_helper_config(tmp / "start")
    client = HelperClient(paths.socket, timeout=5)
    ours, ready, reference = [], [], []
    try:
        for _ in range(runs):
            started = time.perf_counter()
            with subprocess.Popen(
                [str(HELPER_BIN), "--config", str(paths.config)], stderr=subprocess.DEVNULL
            ) as proc:
                deadline = time.monotonic() + 10
                while True:
                    try:
                        client.ping()
                        break
                    except HelperUnavailable:
                        if time.monotonic() > deadline or proc.poll() is not None:
                            proc.kill()
                            raise RuntimeError(
                                "the helper did not answer ping within 10 s"
                            ) from None
                        time.sleep(0.001)
                ours.append(time.perf_counter() - started)
                client.status()
                ready.append(time.perf_counter() - started)
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    raise RuntimeError("the helper did not exit within 10 s of SIGTERM") from None
            started = time.perf_counter()
            subprocess.run([sys.executable, "-c", "pass"], check=True)
            reference.append(time.perf_counter() - started)
    finally:
        cleanup_socket_dir(paths)
    return ours, ready, reference


def _switch_overhead(
    machine: FakeMachine, tmp: Path, runs: int
) -> tuple[list[float], list[float], list[float]]:
    machine.reset()
    profile = str(machine.sandbox.profile)
    paths = write_helper_config(tmp / "switch-helper", machine.sandbox)
    helper = start_helper(paths)
    ours, by_hand, switch_only = [], [], []
    try:
        for i in range(runs):
            target = machine.systems["new" if i % 2 == 0 else "old"]
            started = time.perf_counter()
            op_id = helper.client.apply(target, trial=False)
            result = helper.client.wait(op_id, poll=0.001)
            ours.append(time.perf_counter() - started)
            assert result["state"] == "Succeeded", result["message"]
            back = machine.systems["old" if i % 2 == 0 else "new"]
            started = time.perf_counter()
            _quiet([f"{back}/bin/switch-to-configuration", "switch"])
            _quiet(["nix-env", "-p", profile, "--set", back])
            _quiet([f"{back}/bin/switch-to-configuration", "boot"])
            by_hand.append(time.perf_counter() - started)
            started = time.perf_counter()
            _quiet([f"{back}/bin/switch-to-configuration", "switch"])
            switch_only.append(time.perf_counter() - started)
            # the helper's next apply starts from where the hand-run left the machine
    finally:
        helper.stop()
        cleanup_socket_dir(paths)
    return ours, by_hand, switch_only


def _quiet(argv: list[str]) -> None:
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _row(metric: str, ours: float, reference: float, target: str) -> dict[str, Any]:
    return {
        "metric": metric,
        "pullnix": round(ours, 1),
        "reference": round(reference, 1),
        "ratio": round(ours / reference, 3),
        "target": target,
    }


def compile_helper() -> None:
    """Byte-compile the helper as its Nix package ships it.

    With PYTHONDONTWRITEBYTECODE set (as in this repository's environment) every
    start would compile the helper's sources again, which no installed helper does.
    """
    package = Path(__file__).resolve().parents[1] / "reconciler"
    for part in ("common", "helper"):
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(package / part)], check=True)


def rows(runs: int = 15) -> list[dict[str, Any]]:
    os.environ.setdefault("NIX_CONFIG", OFFLINE_NIX_CONFIG)
    compile_helper()
    tmp = Path(tempfile.mkdtemp(prefix="bench-helper-"))
    try:
        rss, rss_ref = _idle_rss(tmp)
        start, ready, start_ref = _start_to_listening(tmp, runs)
        machine = build_machine(tmp / "machine", {"old": {"version": "1"}, "new": {"version": "2"}})
        steady = _steady_rss(machine, tmp)
        apply_, by_hand, switch_only = _switch_overhead(machine, tmp, runs)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    ms = statistics.median
    return [
        _row(
            "helper idle RSS, just started (MB) vs bare python sleeping", rss, rss_ref, "<= 20 MB"
        ),
        _row(
            "helper idle RSS after an apply with an http check (MB) vs bare python",
            steady,
            rss_ref,
            "<= 20 MB",
        ),
        _row(
            f"helper start to listening (ms, median of {runs}) vs python -c pass",
            ms(start) * 1000,
            ms(start_ref) * 1000,
            "<= 150 ms",
        ),
        _row(
            f"helper start to ready, status answered (ms, median of {runs}) vs python -c pass",
            ms(ready) * 1000,
            ms(start_ref) * 1000,
            "<= 150 ms",
        ),
        _row(
            f"apply, trial off, no checks (ms, median of {runs}) vs the same commands by hand",
            ms(apply_) * 1000,
            ms(by_hand) * 1000,
            "<= 50 ms over the reference",
        ),
        _row(
            f"apply, trial off, no checks (ms, median of {runs}) vs switch alone",
            ms(apply_) * 1000,
            ms(switch_only) * 1000,
            "<= 50 ms over the reference",
        ),
    ]


def met(row: dict[str, Any]) -> bool:
    target = str(row["target"])
    if target == "<= 20 MB":
        return bool(row["pullnix"] <= 20)
    if target == "<= 150 ms":
        return bool(row["pullnix"] <= 150)
    return bool(row["pullnix"] - row["reference"] <= 50)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    args = sys.argv[1:] if argv is None else argv
    result = rows(int(args[0]) if args else 15)
    print(f"{'metric':<78} {'pullnix':>8} {'reference':>9} {'ratio':>6}  target")
    for row in result:
        print(
            f"{row['metric']:<78} {row['pullnix']:>8} {row['reference']:>9} "
            f"{row['ratio']:>6}  {row['target']} ({'met' if met(row) else 'NOT met'})"
        )
    return result


if __name__ == "__main__":
    main()
