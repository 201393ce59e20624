"""pullnix benchmarks: one entry point, one table, every reference measured in the same run.

    .venv/bin/python -m bench                      # everything, full size (~25 min)
    .venv/bin/python -m bench --quick              # everything, small (a few minutes)
    .venv/bin/python -m bench --sections noop,fleet --fleet-agents 50

Sections (each runs in a child process with a time budget; one that fails or
hangs is killed with everything it started, prints its error as a row, and the
others still run):

- noop     the agent's whole no-op pass in-process vs `git ls-remote` per transport
           (bench_agent), and the source layer's no-op check alone (bench_source)
- push     push -> activation started, webhook and watchfiles (bench_agent)
- idle     agent and helper RSS and CPU per hour over an idle period (bench_agent)
- history  1k / 10k / 100k commits and 5k tags: first and incremental fetch (bench_source)
- fleet    N agents polling one smart-HTTP server vs a `git fetch` fleet (bench_fleet)
- waves    N >= 50 real `pullnix agent` processes (each with its helper) polling one
           smart-HTTP server vs N `git fetch` loops, their RSS, and a rollout through
           3 waves with 1 s soaks, Prometheus scraping every agent (bench_waves)
- nix      the agent's overhead around `nix build` (bench_nix)
- helper   helper RSS, start time, overhead around the fixture's switch (bench_helper)
- prebuilt one deploy's peak memory, wall time and bytes fetched: a prebuilt system from a
           signed nginx cache vs evaluating and building on the machine (bench_prebuilt)
- hostile  the helper under a 20 MB one-line flood, 300 idle connections and a full
           state dir, and a ten-minute crash soak (bench_hostile; quick: one minute)
- slowloris the agent's threads, open files and webhook answers under 200 half-open
           connections (bench_webhook)

The table (markdown) goes to stdout, progress to stderr. Ratios are
pullnix / reference; the target column says what each row is held to. Everything
runs on 127.0.0.1 only. Not a test.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from reconciler.demo.fakenixos import OFFLINE_NIX_CONFIG

SECTIONS = (
    "noop",
    "push",
    "idle",
    "history",
    "fleet",
    "waves",
    "nix",
    "helper",
    "prebuilt",
    "hostile",
    "slowloris",
)
Row = dict[str, Any]


def _options(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sections",
        default=",".join(SECTIONS),
        help=f"comma-separated, of: {', '.join(SECTIONS)} (default: all)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small sizes: few runs, short idle and fleet, no 100k history",
    )
    parser.add_argument("--runs", type=int, help="runs per median (default 15; quick 5)")
    parser.add_argument("--pushes", type=int, help="pushes per trigger (default 5; quick 2)")
    parser.add_argument(
        "--deploys", type=int, help="deploys per case, prebuilt section (default 3; quick 1)"
    )
    parser.add_argument(
        "--idle-seconds", type=float, help="idle period for the footprint (default 600; quick 30)"
    )
    parser.add_argument("--fleet-agents", type=int, help="fleet size (default 200; quick 20)")
    parser.add_argument(
        "--fleet-seconds", type=float, help="fleet polling time (default 120; quick 20)"
    )
    parser.add_argument(
        "--fleet-interval",
        type=float,
        default=10.0,
        help="fleet poll interval in seconds (default 10)",
    )
    parser.add_argument(
        "--fleet-jitter", type=float, default=1.0, help="fleet poll jitter, +- seconds (default 1)"
    )
    parser.add_argument(
        "--waves-agents", type=int, help="real agents in the waves section (default 50)"
    )
    parser.add_argument(
        "--waves-seconds", type=float, help="waves no-op window (default 60; quick 20)"
    )
    parser.add_argument(
        "--big",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="include the 100k-commit history (default: yes; quick: no)",
    )
    parser.add_argument("--json", action="store_true", help="print the rows as JSON instead")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # run one section, print JSON rows
    parser.add_argument("--child-root", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    quick = options.quick
    for name, full, small in (
        ("runs", 15, 5),
        ("pushes", 5, 2),
        ("deploys", 3, 1),
        ("idle_seconds", 600.0, 30.0),
        ("fleet_agents", 200, 20),
        ("fleet_seconds", 120.0, 20.0),
        ("big", True, False),
        ("waves_agents", 50, 50),
        ("waves_seconds", 60.0, 20.0),
    ):
        if getattr(options, name) is None:
            setattr(options, name, small if quick else full)
    chosen = [s.strip() for s in options.sections.split(",") if s.strip()]
    unknown = sorted(set(chosen) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown sections: {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    options.chosen = [s for s in SECTIONS if s in chosen]
    return options


def _section_runners(o: argparse.Namespace, root: Path) -> dict[str, Callable[[], list[Row]]]:
    # imported here so `--help` and a bad option answer at once
    from bench import (
        bench_agent,
        bench_fleet,
        bench_helper,
        bench_hostile,
        bench_nix,
        bench_prebuilt,
        bench_source,
        bench_waves,
        bench_webhook,
    )

    return {
        "noop": lambda: [
            *bench_agent.noop_pass_rows(root / "noop", o.runs),
            *_source_rows(bench_source.rows(o.runs, history=False)),
        ],
        "push": lambda: bench_agent.push_rows(root / "push", o.pushes),
        "idle": lambda: bench_agent.idle_rows(root / "idle", o.idle_seconds),
        "history": lambda: _source_rows(bench_source.rows(o.runs, o.big, noop=False)),
        "fleet": lambda: bench_fleet.rows(
            o.fleet_agents, o.fleet_seconds, o.fleet_interval, o.fleet_jitter
        ),
        "waves": lambda: bench_waves.rows(o.waves_agents, o.waves_seconds),
        "nix": lambda: bench_nix.rows(o.runs),
        "helper": lambda: bench_helper.rows(o.runs),
        "prebuilt": lambda: bench_prebuilt.rows(o.deploys),
        "hostile": lambda: bench_hostile.rows(60.0 if o.quick else 600.0),
        "slowloris": lambda: bench_webhook.rows(root / "slowloris", o.runs),
    }


def _budget(o: argparse.Namespace, name: str) -> float:
    """Seconds a section may take before it is killed (its whole process group)."""
    return {
        "noop": 300 + 3 * o.runs,
        "push": 300 + 2 * o.pushes * 120,
        "idle": 300 + o.idle_seconds,
        "history": 2400 if o.big else 900,
        "fleet": 600 + 2 * (o.fleet_seconds + o.fleet_interval) + 6 * o.fleet_agents,
        "waves": 1800 + 2 * o.waves_seconds + 20 * o.waves_agents,
        "nix": 300 + 2 * o.runs * 60,
        "helper": 120 + o.runs * 10,
        "prebuilt": 300 + o.deploys * 300,
        "hostile": 600 + (60 if o.quick else 600),
        "slowloris": 300 + o.runs * 10,
    }[name]


def _run_section(o: argparse.Namespace, name: str, root: Path, argv: list[str]) -> list[Row]:
    """One section in a child process of its own session: a hang or a crash there is
    bounded by `_budget` and cannot take the other sections down."""
    section_root = root / name
    section_root.mkdir()
    budget = _budget(o, name)
    with subprocess.Popen(
        [sys.executable, "-m", "bench", *argv, "--child", name, "--child-root", str(section_root)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as child:
        try:
            out, _ = child.communicate(timeout=budget)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)  # the child's own session: what it started
            child.communicate()
            raise TimeoutError(f"section {name} took over {budget:.0f} s; killed") from None
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)  # leftovers of a crashed child
    lines = out.strip().splitlines()
    if child.returncode != 0 or not lines:
        raise RuntimeError(f"section {name} exited {child.returncode}; see stderr")
    rows: list[Row] = json.loads(lines[-1])
    return rows


def _source_rows(rows: list[Row]) -> list[Row]:
    """bench_source's rows, named as the source layer's (not the whole pass)."""
    return [{**r, "metric": f"source: {r['metric']}"} for r in rows]


def _cell(value: Any) -> str:
    return "" if value is None else str(value)


def table(rows: list[Row]) -> str:
    header = ("section", "metric", "pullnix", "reference", "ratio", "target")
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for r in rows:
        cells = [
            r.get("section", ""),
            r["metric"],
            _cell(r["pullnix"]),
            _cell(r["reference"]),
            _cell(r["ratio"]),
            _cell(r["target"]),
        ]
        lines.append("| " + " | ".join(str(c).replace("|", "/") for c in cells) + " |")
    return "\n".join(lines)


def machine_line() -> str:
    mem_kb = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal:")
    )
    return (
        f"{platform.machine()}, nproc {os.cpu_count()}, memory {mem_kb / 1024 / 1024:.1f} "
        f"GiB, Linux {platform.release()}, Python {platform.python_version()}"
    )


def _stop(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    options = _options(argv)
    os.environ.setdefault("NIX_CONFIG", OFFLINE_NIX_CONFIG)
    if options.child:
        print(json.dumps(_section_runners(options, Path(options.child_root))[options.child]()))
        return 0
    # Stopped with SIGTERM (kill, a CI timeout): unwind like Ctrl-C, so the running
    # section's whole session (its agents and helpers) is killed on the way out.
    signal.signal(signal.SIGTERM, _stop)
    rows: list[Row] = []
    failed = 0
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        for name in options.chosen:
            print(f"[bench] {name} ...", file=sys.stderr, flush=True)
            started = time.monotonic()
            try:
                got = _run_section(options, name, Path(tmp), argv)
            except Exception as exc:  # one broken section must not hide the others
                traceback.print_exc(file=sys.stderr)
                failed += 1
                got = [
                    {
                        "metric": f"FAILED: {type(exc).__name__}: {exc}".splitlines()[0][:200],
                        "pullnix": None,
                        "reference": None,
                        "ratio": None,
                        "target": "",
                    }
                ]
            took = time.monotonic() - started
            print(f"[bench] {name} took {took:.0f} s", file=sys.stderr, flush=True)
            rows += [{"section": name, **r} for r in got]
    if options.json:
        print(json.dumps(rows, indent=2))
    else:
        settings = (
            f"runs {options.runs}, pushes {options.pushes}, deploys {options.deploys}, "
            f"idle {options.idle_seconds:g} "
            f"s, fleet {options.fleet_agents} agents x {options.fleet_seconds:g} s every "
            f"{options.fleet_interval:g}+-{options.fleet_jitter:g} s, 100k history "
            f"{'yes' if options.big else 'no'}"
        )
        print(f"pullnix benchmarks - {time.strftime('%Y-%m-%d %H:%M %Z')} - {machine_line()}")
        print(
            f"sections: {', '.join(options.chosen)}; {settings}; "
            f"took {time.monotonic() - began:.0f} s\n"
        )
        print(table(rows))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
