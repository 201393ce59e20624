"""Benchmark: one deploy on the machine, prebuilt from a signed cache vs evaluated and built there.

The fixture is the fake NixOS system with a stand-in for nixpkgs bolted on:
its toplevel's version string depends on `heavy.nix`, which imports 1500
generated Nix files (60 option-like attribute sets each) and folds them into
one attribute set, then hashes the enabled ones - real evaluation work (a few
hundred MB and seconds of `nix build`'s evaluator), though far less than
nixpkgs' NixOS (over a GB and minutes), so the ratios here understate the gap.

Each run is one `pullnix reconcile --once` on the fake machine (agent pass,
helper trial, health check, commit), alternating the two cases:

- evaluated: `configuration.flake`; a new commit (so Nix's flake eval cache
  cannot answer) on a warm store (everything but the new toplevel is there);
- prebuilt: `configuration.prebuilt`; "CI" ran `pullnix publish` for a new
  commit outside the measurement, the toplevel was deleted from the local
  store, and the agent fetches it from nginx serving a signed file:// cache.

Peak memory: the pass runs in a memory cgroup of its own (cgroup v1 here),
so every child (nix, nix-store, git) is in it: `memory.max_usage_in_bytes`
(RSS plus page cache the run touched), and the sum of each process's own
peak RSS (VmHWM, sampled every 20 ms; an upper bound of the concurrent
peak). Bytes fetched: the cache's nginx access log. Wall time: the whole
`reconcile --once`. Target (issue 17): prebuilt peak <= 1/5 of evaluated,
and <= 150 MB. Run as `python -m bench.bench_prebuilt [RUNS]`; `rows()` is
the entry point for the combined runner. Not a test.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from reconciler.demo.fakenixos import FLAKE_SOURCE, OFFLINE_NIX_CONFIG
from tests.support.agentmachine import Machine, fake_machine, spec_yaml
from tests.support.binarycache import delete_path, generate_key, served_cache
from tests.support.nixfixture import commit_fleet
from tests.support.prebuilt import configure_nix, prebuilt_spec, publish, read_lock

MODULES, OPTIONS = 1500, 60
MB = 1024 * 1024


def heavy_files() -> dict[str, str]:
    """flake.nix (the fixture's, its version tied to heavy.nix), heavy.nix and its modules."""
    flake = FLAKE_SOURCE.read_text()
    needle = "            version = knobs.version;\n"
    assert needle in flake, "the fixture's flake changed; update bench_prebuilt"
    heavy = 'knobs.version + "-" + builtins.substring 0 8 (import ./heavy.nix)'
    flake = flake.replace(needle, f"            version = {heavy};\n")
    files = {"flake.nix": flake}
    files["heavy.nix"] = f"""\
# A stand-in for evaluating nixpkgs: import many modules, merge them, hash what is enabled.
let
  lib = {{ genList = builtins.genList; }};
  load = i: import (./gen + "/m${{toString i}}.nix") {{ inherit lib; }};
  modules = builtins.genList load {MODULES};
  merged = builtins.foldl' (acc: m: acc // m) {{ }} modules;
  enabled = builtins.filter (n: merged.${{n}}.enable) (builtins.attrNames merged);
in builtins.hashString "sha256" (builtins.toJSON (map (n: merged.${{n}}) enabled))
"""
    for i in range(MODULES):
        lines = ["{ lib }: {"]
        for j in range(OPTIONS):
            lines.append(
                f'  "opt-{i}-{j}" = {{ name = "option {i}.{j}"; value = {i * OPTIONS + j}; '
                f"enable = {'true' if j % 2 == 0 else 'false'}; "
                f'deps = lib.genList (k: "dep-{i}-${{toString k}}") {j % 7}; }};'
            )
        lines.append("}")
        files[f"gen/m{i}.nix"] = "\n".join(lines) + "\n"
    return files


def _cgroup_parent() -> Path | None:
    """This process's memory cgroup (v1), if a child cgroup can be made in it."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            parent = Path("/sys/fs/cgroup/memory") / path.lstrip("/")
            probe = parent / f"pullnix-bench-probe-{os.getpid()}"
            try:
                probe.mkdir()
                probe.rmdir()
            except OSError:
                return None
            return parent
    return None


class Measured:
    def __init__(self) -> None:
        self.seconds = 0.0
        self.cgroup_peak = 0  # bytes, memory.max_usage_in_bytes
        self.rss_sum = 0  # bytes, sum of every process's VmHWM
        self.returncode = 0
        self.output = ""


def measure(argv: list[str], parent: Path, name: str) -> Measured:
    """Run `argv` in a fresh memory cgroup under `parent`; its wall time and peaks."""
    group = parent / name
    group.mkdir()
    result = Measured()
    hwm: dict[int, int] = {}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            for pid in (group / "cgroup.procs").read_text().split():
                try:
                    status = Path(f"/proc/{pid}/status").read_text()
                except OSError:
                    continue
                for line in status.splitlines():
                    if line.startswith("VmHWM:"):
                        hwm[int(pid)] = max(hwm.get(int(pid), 0), int(line.split()[1]) * 1024)
            done.wait(0.02)

    # The wrapper joins the cgroup, then becomes the command: nothing runs outside it.
    wrapped = ["/bin/sh", "-c", f'echo $$ > "{group}/cgroup.procs" && exec "$@"', "sh", *argv]
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    proc = subprocess.run(wrapped, capture_output=True, text=True, timeout=900, check=False)
    result.seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    result.returncode, result.output = proc.returncode, proc.stdout + proc.stderr
    result.cgroup_peak = int((group / "memory.max_usage_in_bytes").read_text())
    result.rss_sum = sum(hwm.values())
    group.rmdir()
    return result


def rows(runs: int = 3) -> list[dict[str, Any]]:
    os.environ.setdefault("NIX_CONFIG", OFFLINE_NIX_CONFIG)
    parent = _cgroup_parent()
    if parent is None:
        raise RuntimeError("no writable memory cgroup here; cannot measure the process tree")
    with tempfile.TemporaryDirectory(prefix="bench-prebuilt-") as tmp:
        root = Path(tmp)
        key = generate_key(root / "keys", "bench-ci-1")
        with fake_machine(root / "m") as machine, served_cache(root) as cache:
            commit_fleet(machine.repo, files=heavy_files(), message="heavy", version="warm")
            machine.built(machine.repo.sha)  # the fixture's parts (kernel, initrd...) are warm
            configure_nix(machine, [cache.url("fleet")], [key.public])
            evaluated: list[Measured] = []
            prebuilt: list[tuple[Measured, int]] = []
            for i in range(runs):
                evaluated.append(_evaluated(machine, parent, i))
                prebuilt.append(_prebuilt(machine, parent, i, key, cache))
    return _rows(evaluated, prebuilt)


def _evaluated(machine: Machine, parent: Path, i: int) -> Measured:
    commit_fleet(
        machine.repo,
        files={"pullnix.yaml": spec_yaml(machine.sandbox)},
        version=f"eval-{i}-{time.time_ns()}",
    )
    return _checked(measure(machine.reconcile_argv(), parent, f"pullnix-bench-eval-{i}"))


def _prebuilt(machine: Machine, parent: Path, i: int, key: Any, cache: Any) -> tuple[Measured, int]:
    commit_fleet(
        machine.repo,
        files={"pullnix.yaml": spec_yaml(machine.sandbox)},
        version=f"pre-{i}-{time.time_ns()}",
    )
    ci = publish(machine, key, f"file://{cache.root}/fleet")
    if ci.returncode != 0:
        raise RuntimeError(f"publish failed:\n{ci.stderr}")
    system = read_lock(machine)["hosts"]["edge-01"]["storePath"]
    commit_fleet(machine.repo, files={"pullnix.yaml": prebuilt_spec(machine)}, message="deploy")
    delete_path(system)
    before = cache.bytes_served()
    got = _checked(measure(machine.reconcile_argv(), parent, f"pullnix-bench-pre-{i}"))
    return got, cache.bytes_served() - before


def _checked(m: Measured) -> Measured:
    if m.returncode != 0:
        raise RuntimeError(f"reconcile --once exited {m.returncode}:\n{m.output[-3000:]}")
    return m


def _rows(evaluated: list[Measured], prebuilt: list[tuple[Measured, int]]) -> list[dict[str, Any]]:
    def med(values: list[float]) -> float:
        return statistics.median(values)

    pre = [m for m, _ in prebuilt]
    out = []
    for metric, get, unit in (
        ("peak RSS, agent + every child (sum of VmHWM)", lambda m: m.rss_sum / MB, "MB"),
        ("peak memory of the pass's cgroup (RSS + page cache)", lambda m: m.cgroup_peak / MB, "MB"),
        ("wall time of the deploy (reconcile --once)", lambda m: m.seconds, "s"),
    ):
        ours, ref = med([get(m) for m in pre]), med([get(m) for m in evaluated])
        target = "<= 0.2; <= 150 MB" if unit == "MB" else "report"
        out.append(
            {
                "metric": f"deploy, prebuilt vs evaluated+built on a warm store: {metric}",
                "pullnix": f"{ours:.1f} {unit}",
                "reference": f"{ref:.1f} {unit}",
                "ratio": round(ours / ref, 2),
                "target": target,
            }
        )
    fetched = med([float(b) for _, b in prebuilt])
    out.append(
        {
            "metric": "deploy, prebuilt: bytes fetched from the cache (narinfo + NAR)",
            "pullnix": f"{fetched / 1024:.1f} KiB",
            "reference": None,
            "ratio": None,
            "target": "report",
        }
    )
    return out


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    for row in rows(int(args[0]) if args else 3):
        print(row)


if __name__ == "__main__":
    main()
