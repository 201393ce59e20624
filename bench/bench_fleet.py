"""Benchmark: a fleet of agents polling one smart-HTTP git server, against a `git fetch` fleet.

N simulated agents poll one repository at an interval with jitter for a given
time, the repository unchanged (every poll is a no-op). Two fleets, one after
the other, against the same server:

- pullnix: N `GitSource` objects (reconciler/source, the code path the agent's
  pass fetches through, each with its own mirror and the token file) in one
  process, each calling `sync()` on its own schedule from asyncio through a
  thread pool;
- reference: N bare clones, each `git fetch URL +refs/heads/main:refs/heads/main`
  (git's defaults: protocol v2) on the same schedule.

The server is tests/support/gitserve.HttpGitServer (a threaded Python HTTP
server that checks the token and runs `git http-backend` per request) in a
process of its own; its CPU is utime+stime of that process and of the
http-backend children it reaped, from /proc, over the measured window only
(the mirrors and clones are made before it). Bytes are counted by a TCP relay
in front of the server (both directions, TCP payload: HTTP headers and
bodies). Results: server CPU per poll, bytes per poll and HTTP requests per
poll, pullnix against git; target ratio <= 1.0.

Run: `python -m bench.bench_fleet [AGENTS] [SECONDS]`; `rows()` is the entry point
for `python -m bench`. Not a test.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

TOKEN = "bench-token"  # noqa: S105 -- a loopback test server's token, not a secret
HEADER = f"http.extraHeader=Authorization: Bearer {TOKEN}"
QUIET_GIT = [
    "-c",
    "gc.auto=0",
    "-c",
    "maintenance.auto=false",
    "-c",
    "fetch.writeCommitGraph=false",
]
Row = dict[str, Any]


# --------------------------------------------------------------------------- the relay


class Relay:
    """A TCP relay 127.0.0.1:port -> 127.0.0.1:target that counts the bytes it carries."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.up = 0
        self.down = 0
        self.connections = 0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the relay did not start")

    def stop(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)

    def total(self) -> tuple[int, int]:
        return self.up + self.down, self.connections

    def _run(self) -> None:
        self._loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        async with server:
            await self._stop.wait()
        pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in pending:  # connections still open (keep-alive): end them quietly
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            r2, w2 = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.close()
            return
        await asyncio.gather(self._pipe(reader, w2, "up"), self._pipe(r2, writer, "down"))
        for w in (w2, writer):
            w.close()

    async def _pipe(
        self,
        src: asyncio.StreamReader,
        dst: asyncio.StreamWriter,
        way: str,
    ) -> None:
        with contextlib.suppress(OSError):
            while data := await src.read(65536):
                setattr(self, way, getattr(self, way) + len(data))
                dst.write(data)
                await dst.drain()
            if dst.can_write_eof():
                dst.write_eof()


# --------------------------------------------------------------------------- processes


def _cpu_seconds(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / os.sysconf("SC_CLK_TCK")


def _readline(stream: IO[str], timeout: float, what: str) -> str:
    """One line from a child's stdout within `timeout` seconds."""
    box: list[str] = []
    reader = threading.Thread(target=lambda: box.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if not box or not box[0]:
        raise RuntimeError(f"no {what} within {timeout:.0f} s")
    return box[0].strip()


def serve_main(root: str) -> None:
    """Child: the HTTP git server until stdin closes; each line read asks for the counts of
    the requests answered so far (method, last path element, status) on stdout."""
    from tests.support.gitserve import HttpGitServer

    with HttpGitServer.serving(Path(root), TOKEN) as http:
        print(http.port, flush=True)
        for _ in sys.stdin:
            counts = Counter(f"{m} {p.rsplit('/', 1)[-1]} {s}" for m, p, s in list(http.requests))
            print(json.dumps(counts), flush=True)


def fleet_main(
    mode: str,
    agents: int,
    interval: float,
    jitter: float,
    seconds: float,
    url: str,
    root: str,
    token_file: str,
) -> None:
    """Child: make the fleet, print "ready", wait for "go", poll, print the result."""
    polls = (
        _pullnix_fleet(agents, url, Path(root), Path(token_file))
        if mode == "pullnix"
        else _git_fleet(agents, url, Path(root))
    )
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return
    result = asyncio.run(_schedule(polls, interval, jitter, seconds))
    print(json.dumps(result), flush=True)


Poll = Any  # an async callable returning whether the poll fetched a pack


def _pullnix_fleet(agents: int, url: str, root: Path, token_file: Path) -> list[Poll]:
    from reconciler.common.config import SourceConfig
    from reconciler.source import GitSource, RetryPolicy

    config = SourceConfig(urls=(url,), token_file=token_file)
    pool = ThreadPoolExecutor(max_workers=8)
    polls: list[Poll] = []
    for i in range(agents):
        state = root / f"agent-{i}"
        source = GitSource(
            config, state, state / "helper", state / "current-system", retry=RetryPolicy(attempts=1)
        )
        source.sync()  # the first fetch: before the measured window

        async def poll(source: GitSource = source) -> bool:
            loop = asyncio.get_running_loop()
            return bool((await loop.run_in_executor(pool, source.sync)).fetched)

        polls.append(poll)
    return polls


def _git_fleet(agents: int, url: str, root: Path) -> list[Poll]:
    polls: list[Poll] = []
    for i in range(agents):
        clone = root / f"agent-{i}.git"
        subprocess.run(
            ["git", "-c", HEADER, *QUIET_GIT, "clone", "-q", "--bare", url, str(clone)],
            check=True,
            capture_output=True,
            timeout=120,
        )

        async def poll(clone: Path = clone) -> bool:
            proc = await asyncio.create_subprocess_exec(
                "git",
                "-c",
                HEADER,
                *QUIET_GIT,
                "-C",
                str(clone),
                "fetch",
                "-q",
                url,
                "+refs/heads/main:refs/heads/main",
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
            if await proc.wait() != 0:
                raise RuntimeError("git fetch failed")
            return False

        polls.append(poll)
    return polls


async def _schedule(
    polls: list[Poll],
    interval: float,
    jitter: float,
    seconds: float,
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    start = loop.time()
    end = start + seconds
    done: list[float] = []
    errors: list[str] = []
    fetched = 0

    async def agent(index: int, poll: Poll) -> None:
        nonlocal fetched
        rng = random.Random(index)  # jitter, not cryptography
        at = start + rng.uniform(0, interval)
        while at < end:
            await asyncio.sleep(max(0.0, at - loop.time()))
            began = loop.time()
            try:
                fetched += bool(await poll())
                done.append(loop.time() - began)
            except Exception as exc:  # a failed poll is counted, not fatal
                errors.append(type(exc).__name__)
            at += interval + rng.uniform(-jitter, jitter)

    await asyncio.gather(*(agent(i, p) for i, p in enumerate(polls)))
    return {
        "polls": len(done),
        "errors": len(errors),
        "fetched": fetched,
        "latency_ms": statistics.median(done) * 1000 if done else None,
        "elapsed": loop.time() - start,
    }


# --------------------------------------------------------------------------- orchestration


def _run_fleet(
    mode: str,
    agents: int,
    interval: float,
    jitter: float,
    seconds: float,
    url: str,
    root: Path,
    token_file: Path,
    server: subprocess.Popen[str],
    relay: Relay,
) -> dict[str, Any]:
    (root / mode).mkdir(parents=True)
    with subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.bench_fleet",
            "--fleet",
            mode,
            str(agents),
            str(interval),
            str(jitter),
            str(seconds),
            url,
            str(root / mode),
            str(token_file),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        assert child.stdin is not None
        assert child.stdout is not None
        try:
            if _readline(child.stdout, 60 + 3 * agents, f"{mode} fleet setup") != "ready":
                raise RuntimeError(f"the {mode} fleet did not get ready")
            requests0 = _requests(server)
            cpu0, (bytes0, conns0) = _cpu_seconds(server.pid), relay.total()
            child.stdin.write("go\n")
            child.stdin.flush()
            result: dict[str, Any] = json.loads(
                _readline(child.stdout, seconds + interval + 120, f"{mode} fleet result")
            )
            cpu1, (bytes1, conns1) = _cpu_seconds(server.pid), relay.total()
            requests1 = _requests(server)
        finally:
            if child.poll() is None:
                child.kill()
    result.update(
        server_cpu=cpu1 - cpu0,
        bytes=bytes1 - bytes0,
        connections=conns1 - conns0,
        requests=sum(requests1.values()) - sum(requests0.values()),
        kinds={
            k: v - requests0.get(k, 0) for k, v in requests1.items() if v != requests0.get(k, 0)
        },
    )
    return result


def _requests(server: subprocess.Popen[str]) -> dict[str, int]:
    assert server.stdin is not None
    assert server.stdout is not None
    server.stdin.write("count\n")
    server.stdin.flush()
    counts: dict[str, int] = json.loads(_readline(server.stdout, 30, "the request counts"))
    return counts


def rows(
    agents: int = 200, seconds: float = 120, interval: float = 10, jitter: float = 1
) -> list[Row]:
    from tests.support.gitrepo import Upstream

    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        root = Path(tmp)
        up = Upstream.create(root / "upstream")
        up.generate(100)
        token_file = root / "token"
        token_file.write_text(TOKEN)
        with subprocess.Popen(
            [sys.executable, "-m", "bench.bench_fleet", "--serve", str(up.root)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        ) as server:
            assert server.stdin is not None
            assert server.stdout is not None
            relay = Relay(int(_readline(server.stdout, 30, "the server's port")))
            relay.start()
            url = f"http://127.0.0.1:{relay.port}/fleet.git"
            try:
                results = {
                    mode: _run_fleet(
                        mode,
                        agents,
                        interval,
                        jitter,
                        seconds,
                        url,
                        root,
                        token_file,
                        server,
                        relay,
                    )
                    for mode in ("pullnix", "git")
                }
                server.stdin.close()
            finally:
                relay.stop()
                if server.poll() is None:
                    server.kill()
    return _rows(results, agents, seconds, interval, jitter)


def _rows(
    results: dict[str, dict[str, Any]], agents: int, seconds: float, interval: float, jitter: float
) -> list[Row]:
    ours, git = results["pullnix"], results["git"]
    label = f"{agents} agents, every {interval:g}+-{jitter:g} s for {seconds:g} s"

    def per_poll(r: dict[str, Any], key: str, scale: float = 1.0) -> float:
        return float(r[key]) * scale / max(int(r["polls"]), 1)

    def ratio_row(
        metric: str, a: float, b: float, digits: int = 2, target: str = "ratio <= 1.0"
    ) -> Row:
        return {
            "metric": metric,
            "pullnix": round(a, digits),
            "reference": round(b, digits),
            "ratio": round(a / b, 3) if b else None,
            "target": target,
        }

    out = [
        ratio_row(
            f"fleet: server CPU per no-op poll (ms), {label}; vs git fetch",
            per_poll(ours, "server_cpu", 1000),
            per_poll(git, "server_cpu", 1000),
        ),
        ratio_row(
            f"fleet: bytes per no-op poll (TCP payload), {label}; vs git fetch",
            per_poll(ours, "bytes"),
            per_poll(git, "bytes"),
            0,
        ),
        ratio_row(
            "fleet: HTTP requests per poll; vs git fetch",
            per_poll(ours, "requests"),
            per_poll(git, "requests"),
        ),
        ratio_row(
            "fleet: TCP connections per poll; vs git fetch",
            per_poll(ours, "connections"),
            per_poll(git, "connections"),
            2,
            "context",
        ),
        ratio_row(
            "fleet: median poll latency at the client (ms); vs git fetch",
            float(ours["latency_ms"] or 0),
            float(git["latency_ms"] or 0),
            1,
            "context",
        ),
        {
            "metric": "fleet: polls done (errors, polls that fetched a pack); vs git fetch",
            "pullnix": f"{ours['polls']} ({ours['errors']}, {ours['fetched']})",
            "reference": f"{git['polls']} ({git['errors']}, {git['fetched']})",
            "ratio": None,
            "target": f"~{int(agents * seconds / interval)} each, 0 errors",
        },
        {
            "metric": "fleet: HTTP requests in the window by kind",
            "pullnix": _kinds(ours),
            "reference": _kinds(git),
            "ratio": None,
            "target": "context",
        },
    ]
    return out


def _kinds(result: dict[str, Any]) -> str:
    return "; ".join(f"{k}: {v}" for k, v in sorted(result["kinds"].items()))


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] == "--serve":
        serve_main(args[1])
        return
    if args and args[0] == "--fleet":
        mode, agents, interval, jitter, seconds, url, root, token_file = args[1:9]
        fleet_main(
            mode, int(agents), float(interval), float(jitter), float(seconds), url, root, token_file
        )
        return
    agents = int(args[0]) if args else 200
    seconds = float(args[1]) if len(args) > 1 else 120
    for r in rows(agents, seconds):
        print(json.dumps(r))


if __name__ == "__main__":
    main()
