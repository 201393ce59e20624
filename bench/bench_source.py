"""Benchmark: the git source layer against the `git` command on the same URLs.

Two questions:

1. The no-op check. What does a reconcile pay when nothing changed upstream?
   `GitSource.sync()` on an up-to-date mirror (heads listed, no pack) against
   `git -c protocol.version=0 ls-remote URL` (the cheapest thing git itself can
   do, in the protocol libgit2 speaks; git's default v2 costs an extra
   exchange, ~50 ms more over git:// here), over file://,
   git:// (git daemon) and smart HTTP with a token (the token-checking server of
   tests/support/gitserve.py in front of git http-backend), median of N each,
   alternating. Target: ratio <= 1.0.
2. Big histories. A repository of 1k and 10k commits (100k with --big) made
   with `git fast-import`, and one of 5k commits each with a tag (--tags N),
   served by git daemon: first fetch into an empty
   mirror (against `git clone --bare`) and an incremental fetch of 10 new
   commits (against `git fetch` in that clone), wall time and peak RSS. Each
   measurement runs in a fresh child process (this file with --child); peak RSS
   is getrusage(RUSAGE_SELF).ru_maxrss of that process for pullnix (Python and
   pygit2 included: the "process baseline" row shows how much of it is the
   interpreter), and for git the ru_maxrss GNU time reports from wait4 (the
   largest of git and the children it waited for, e.g. index-pack). The agent
   has the interpreter and pygit2 loaded anyway, so the memory target applies
   to the peak above that baseline; the raw peak is shown for context.
   Targets: time ratio <= 1.5, memory (above baseline) ratio <= 3.0.
   pullnix mirrors the branch only, so for the tagged repository git is asked
   for the same (`clone --single-branch --no-tags`, `fetch --no-tags`), and
   the no-op check is measured there too (every tag is in the advertisement).

Run: `python -m bench.bench_source [--runs N] [--big]`; `rows()` is the entry
point for a combined runner. Not a test.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from reconciler.common.config import SourceConfig
from reconciler.source import GitSource, RetryPolicy
from tests.support.gitrepo import Upstream, git
from tests.support.gitserve import GitDaemon, HttpGitServer

TOKEN = "bench-token"  # noqa: S105 -- a test server's token, not a secret
NOOP_TARGET = "<= 1.0"
TIME_TARGET = "<= 1.5"
MEMORY_TARGET = "<= 3.0"
NO_RETRY = RetryPolicy(attempts=1)
# git does housekeeping after a fetch that pullnix does not; keep it out of the timing
QUIET_GIT = [
    "-c",
    "gc.auto=0",
    "-c",
    "maintenance.auto=false",
    "-c",
    "fetch.writeCommitGraph=false",
]
TIME = "/usr/bin/time"  # GNU time: peak RSS of git and its children, see child_main


def _source(urls: tuple[str, ...], state: Path, token_file: Path | None = None) -> GitSource:
    config = SourceConfig(urls=urls, token_file=token_file)
    return GitSource(config, state, state / "helper", state / "current-system", retry=NO_RETRY)


def median_alternating(
    ours: Callable[[], None],
    theirs: Callable[[], None],
    runs: int,
) -> tuple[float, float]:
    """Run `ours` then `theirs`, `runs` times over; the median seconds of each (alternating
    keeps a drift of the machine's load from favouring either)."""
    a: list[float] = []
    b: list[float] = []
    for _ in range(runs):
        for fn, into in ((ours, a), (theirs, b)):
            started = time.perf_counter()
            fn()
            into.append(time.perf_counter() - started)
    return statistics.median(a), statistics.median(b)


def _row(metric: str, ours: float, reference: float, target: str, unit: str) -> dict[str, Any]:
    return {
        "metric": f"{metric} ({unit})",
        "pullnix": round(ours, 4),
        "reference": round(reference, 4),
        "ratio": round(ours / reference, 3) if reference else None,
        "target": target,
    }


def noop_rows(root: Path, runs: int) -> list[dict[str, Any]]:
    up = Upstream.create(root / "noop")
    up.generate(200)
    token_file = root / "token"
    token_file.write_text(TOKEN)
    git_env_header = ["-c", f"http.extraHeader=Authorization: Bearer {TOKEN}"]
    out: list[dict[str, Any]] = []
    with GitDaemon.serving(up.root) as daemon, HttpGitServer.serving(up.root, TOKEN) as http:
        for name, url, extra in (
            ("file://", up.file_url, []),
            ("git://", daemon.url("fleet.git"), []),
            ("smart HTTP + token", http.url("fleet.git"), git_env_header),
        ):
            source = _source(
                (url,), root / f"state-{len(out)}", token_file if url.startswith("http") else None
            )
            source.sync()

            def ours(source: GitSource = source) -> None:
                if source.sync().fetched:
                    raise AssertionError("the no-op check fetched a pack")

            def theirs(url: str = url, extra: list[str] = extra) -> None:
                subprocess.run(
                    [
                        "git",
                        "-c",
                        "protocol.version=0",
                        *extra,
                        "ls-remote",
                        url,
                        "refs/heads/main",
                    ],
                    check=True,
                    capture_output=True,
                )

            a, b = median_alternating(ours, theirs, runs)
            out.append(_row(f"no-op check, {name}, median of {runs}", a, b, NOOP_TARGET, "s"))
    return out


def _child(args: list[str]) -> dict[str, Any]:
    # Exec'd by GNU time, not straight from this process: a child inherits the RSS
    # high-water mark of the process it was forked from across exec, and this one
    # has held the generated fast-import streams (100 MB-ish for 100k commits).
    done = subprocess.run(
        [TIME, "-o", "/dev/null", sys.executable, "-m", "bench.bench_source", "--child", *args],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _tag_every_commit(up: Upstream, tags: int) -> None:
    """Lightweight tags v0..v{tags-1} on the newest `tags` commits, in one update-ref."""
    shas = up.git("rev-list", f"--max-count={tags}", up.branch).split()
    if len(shas) < tags:
        raise ValueError(f"{tags} tags need {tags} commits, the branch has {len(shas)}")
    lines = "".join(f"create refs/tags/v{i} {sha}\n" for i, sha in enumerate(shas))
    git(f"--git-dir={up.git_dir}", "update-ref", "--stdin", input=lines.encode())


def history_rows(
    root: Path,
    commits: int,
    runs: int,
    baseline_mib: float,
    tags: int = 0,
) -> list[dict[str, Any]]:
    """First and incremental fetch of a generated history; with `tags`, that many tags too.

    pullnix mirrors the branch only, so with tags git is asked for the same
    (`--single-branch --no-tags`) and the no-op check (ref advertisement with
    every tag) is measured as well."""
    name = f"hist-{commits}-{tags}"
    up = Upstream.create(root / name)
    started = time.perf_counter()
    up.generate(commits)
    if tags:
        _tag_every_commit(up, tags)
    generated = time.perf_counter() - started
    label = f"{commits // 1000}k commits" + (f" + {tags // 1000}k tags" if tags else "")
    clone_args = ["--single-branch", "--no-tags", "-b", up.branch] if tags else []
    out: list[dict[str, Any]] = []
    with GitDaemon.serving(up.root) as daemon:
        url = daemon.url("fleet.git")
        first_ours, first_theirs = [], []
        for i in range(runs):
            state, clone = root / f"s-{name}-{i}", root / f"c-{name}-{i}"
            first_ours.append(_child(["pullnix", url, str(state)]))
            first_theirs.append(
                _child(["git", *QUIET_GIT, "clone", "--bare", "-q", *clone_args, url, str(clone)])
            )
        if tags:
            source = _source((url,), root / f"s-{name}-0")

            def ours() -> None:
                if source.sync().fetched:
                    raise AssertionError("the no-op check fetched a pack")

            def theirs() -> None:
                subprocess.run(
                    ["git", "-c", "protocol.version=0", "ls-remote", url, "refs/heads/main"],
                    check=True,
                    capture_output=True,
                )

            a, b = median_alternating(ours, theirs, 15)
            out.append(_row(f"no-op check, git://, {label}, median of 15", a, b, NOOP_TARGET, "s"))
        up.generate(10)
        inc_ours, inc_theirs = [], []
        for i in range(runs):
            state, clone = root / f"s-{name}-{i}", root / f"c-{name}-{i}"
            inc_ours.append(_child(["pullnix", url, str(state)]))
            inc_theirs.append(
                _child(
                    [
                        "git",
                        *QUIET_GIT,
                        "-C",
                        str(clone),
                        "fetch",
                        "-q",
                        "--no-tags",
                        url,
                        "+refs/heads/main:refs/heads/main",
                    ]
                )
            )
    for what, ours, theirs in (
        ("first fetch", first_ours, first_theirs),
        ("incremental fetch (+10)", inc_ours, inc_theirs),
    ):
        out.append(
            _row(
                f"{what}, {label}",
                statistics.median(r["seconds"] for r in ours),
                statistics.median(r["seconds"] for r in theirs),
                TIME_TARGET,
                "s",
            )
        )
        peak_ours = max(r["maxrss_kb"] for r in ours) / 1024
        peak_theirs = max(r["maxrss_kb"] for r in theirs) / 1024
        out.append(_row(f"{what}, {label}, peak RSS", peak_ours, peak_theirs, "context", "MiB"))
        out.append(
            _row(
                f"{what}, {label}, peak RSS above baseline",
                max(peak_ours - baseline_mib, 0.0),
                peak_theirs,
                MEMORY_TARGET,
                "MiB",
            )
        )
    out.append(
        {
            "metric": f"generate {label} (git fast-import, update-ref) (s)",
            "pullnix": None,
            "reference": round(generated, 3),
            "ratio": None,
            "target": "setup",
        }
    )
    return out


def rows(
    runs: int = 15, big: bool = False, *, noop: bool = True, history: bool = True, tags: int = 5_000
) -> list[dict[str, Any]]:
    """The no-op rows and the history rows (1k, 10k, with `big` 100k commits; and, unless
    `tags` is 0, a history of `tags` commits each tagged)."""
    with tempfile.TemporaryDirectory(prefix="bench-source-") as tmp:
        root = Path(tmp)
        out = noop_rows(root, runs) if noop else []
        if not history:
            return out
        baseline = _child(["baseline"])["maxrss_kb"] / 1024
        out.append(
            {
                "metric": "process baseline: Python + pygit2, no fetch (MiB)",
                "pullnix": round(baseline, 1),
                "reference": None,
                "ratio": None,
                "target": "context",
            }
        )
        for commits in (1_000, 10_000, *((100_000,) if big else ())):
            out += history_rows(root, commits, 1 if commits >= 100_000 else 3, baseline)
        if tags:
            out += history_rows(root, tags, 3, baseline, tags=tags)
        return out


def child_main(args: list[str]) -> None:
    """One measured operation in this fresh process; prints {"seconds", "maxrss_kb"}."""
    if args[0] == "pullnix":
        url, state = args[1], Path(args[2])
        source = _source((url,), state)
        started = time.perf_counter()
        fetched = source.sync().fetched
        seconds = time.perf_counter() - started
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        if not fetched:
            raise SystemExit("expected a fetch")
    elif args[0] == "baseline":
        _source(("file:///nonexistent",), Path(tempfile.mkdtemp(prefix="bench-baseline-")))
        seconds, maxrss = 0.0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    else:
        # Through GNU time: a child forked from this Python process inherits its RSS
        # high-water mark across exec, which would bill git for the interpreter.
        with tempfile.NamedTemporaryFile("r", prefix="bench-rss-") as rss:
            started = time.perf_counter()
            subprocess.run([TIME, "-f", "%M", "-o", rss.name, *args], check=True)
            seconds = time.perf_counter() - started
            maxrss = int(rss.read().split()[-1])
    print(json.dumps({"seconds": seconds, "maxrss_kb": maxrss}))


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        child_main(argv[1:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="runs per no-op median")
    parser.add_argument("--big", action="store_true", help="also 100k commits")
    parser.add_argument(
        "--tags",
        type=int,
        default=5_000,
        help="a history of this many commits, each tagged (0: none)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON rows")
    options = parser.parse_args(argv)
    result = rows(options.runs, options.big, tags=options.tags)
    if options.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{'metric':<70} {'pullnix':>9} {'reference':>10} {'ratio':>7}  target")
    for row in result:
        print(
            f"{row['metric']:<70} {row['pullnix']!s:>9} {row['reference']!s:>10} "
            f"{row['ratio']!s:>7}  {row['target']}"
        )


if __name__ == "__main__":
    main()
