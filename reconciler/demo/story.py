"""`pullnix demo`: the whole story on this machine, in a sandbox, with no NixOS and no network.

Owns the demo's run, act by act:

0. set the stage: a sandbox machine (fake NixOS, see `fakenixos`), a fleet
   repository with its first commit, that commit built by real Nix and
   installed as the running system, `agent.toml`, then the real
   `pullnix-helper` and the real `pullnix agent` as processes;
1. a change is pushed: the agent notices (watchfiles on the file:// remote),
   builds it, the helper activates it on trial, checks its health, the new
   generation is confirmed and committed;
2. a change whose health check fails is pushed: the helper rolls the machine
   back by itself, and the agent will not retry that revision;
3. `pullnix status` and `pullnix history` as a user would type them, and
   where the traces went;
4. CI publishes a prebuilt system to a signed binary cache and the machine
   deploys it without evaluating anything (`prebuilt_act.py`).

Everything it prints comes from what the agent and the helper report over
their sockets (the agent's local API and the helper's `status`; `watch.py`
follows them), never from its own guesses; `stage.py` runs the processes.
Exit 0 when the story went as told, 1 otherwise (with the logs' tails).

Must not: act on the real machine (every path is under the sandbox), or talk
to the network.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from reconciler.common.config import load_machine_config
from reconciler.common.tracelinks import jaeger_template, jaeger_ui_of, trace_link
from reconciler.demo import prebuilt_act
from reconciler.demo.fakenixos import (
    OFFLINE_NIX_CONFIG,
    Sandbox,
    install_system,
    make_sandbox,
    toplevel_attr,
)
from reconciler.demo.fleet import DemoFleet
from reconciler.demo.progress import Progress
from reconciler.demo.stage import DemoFailed, Stage, answers, cli, program, start, stop, tail, wait
from reconciler.demo.watch import follow

HOST = "edge-01"

#: The example fleet's desired state (examples/fleet/pullnix.yaml), cut down to what a
#: sandbox can check: the remote still answers, and the fake system's health file says ok.
SPEC = """\
apiVersion: pullnix.dev/v1alpha1
kind: NixOSDeployment
metadata:
  name: demo-fleet
spec:
  configuration:
    flake: "nixosConfigurations.{{host}}"
  strategy:
    action: switch
    trial: true
  healthChecks:
    - name: git
      gitRemote: {{}}
      timeout: 10s
    - name: app-health
      command: {{argv: ["/bin/grep", "-qx", "ok", "{health}"]}}
      timeout: 5s
      retries: 1
      interval: 500ms
  rollback:
    automatic: true
    confirmTimeout: 60s
  hooks:
    postDeploy:
      argv:
        - /bin/sh
        - -c
        - 'echo "$PULLNIX_RESULT $PULLNIX_REVISION generation $PULLNIX_GENERATION" >> {hooks}'

"""


def run(workdir: Path | None, keep: bool, progress: Progress, jaeger_ui: str | None = None) -> int:
    """The whole demo; its exit status. `jaeger_ui`: the Jaeger UI the trace links point
    at (default: beside the OTLP endpoint, if one is set)."""
    problem = _preflight()
    if problem:
        progress.say(f"pullnix demo: {problem}")
        return 1
    os.environ["NIX_CONFIG"] = os.environ.get("NIX_CONFIG", "") + "\n" + OFFLINE_NIX_CONFIG
    root = Path(workdir or tempfile.mkdtemp(prefix="pullnix-demo-")).resolve()
    root.mkdir(parents=True, exist_ok=True)
    sockets = Path(tempfile.mkdtemp(prefix="pnx-demo-", dir="/tmp"))  # AF_UNIX paths are short
    stage: Stage | None = None
    try:
        stage = _set_stage(root, sockets, progress, _trace_url(jaeger_ui))
        _tell(stage, progress)
        return 0
    except DemoFailed as exc:
        progress.done_waiting()
        progress.say(f"\npullnix demo: FAILED: {exc}")
        if stage is not None:
            for name in ("agent", "helper"):
                progress.say(f"\n-- the last lines of {stage.log(name)}:")
                progress.say(tail(stage.log(name), 25))
        return 1
    finally:
        if stage is not None:
            stop(stage)
        shutil.rmtree(sockets, ignore_errors=True)
        if keep or workdir is not None:
            progress.say(f"\nThe sandbox is kept in {root} (logs, status, the fleet repository).")
        else:
            shutil.rmtree(root, ignore_errors=True)


def _preflight() -> str:
    if shutil.which("nix") is None or shutil.which("nix-env") is None:
        return (
            "Nix is not installed: `apt-get install nix-bin` (scripts/install.sh does it); "
            "the demo builds a small fake NixOS system with real Nix"
        )
    if not os.access("/nix/store", os.W_OK):
        return (
            "cannot write to /nix/store: run the demo as root (Debian's nix-bin has no "
            "daemon, so only root can build)"
        )
    for name in ("pullnix", "pullnix-helper"):
        if program(name) is None:
            return f"cannot find the `{name}` program next to this one or on PATH"
    return ""


# -- act 0: the stage ------------------------------------------------------------------


def _otlp_endpoint() -> str:
    return os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT", ""
    )


def _trace_url(jaeger_ui: str | None) -> str:
    """The `[telemetry] trace_url` of the demo machine: links into `jaeger_ui`, else into
    the Jaeger beside the OTLP endpoint; "" when the traces go nowhere."""
    endpoint = _otlp_endpoint()
    if not endpoint:
        return ""
    ui = jaeger_ui or jaeger_ui_of(endpoint)
    return jaeger_template(ui) if ui else ""


def _set_stage(root: Path, sockets: Path, progress: Progress, trace_url: str) -> Stage:
    progress.act("Setting the stage: a sandbox machine following a git repository")
    progress.say(
        f"A fake NixOS machine under {root}, built by real Nix; the real pullnix agent "
        "and pullnix-helper\nrun as processes and follow a local git repository. "
        "Nothing outside the sandbox is touched.\n"
    )
    sandbox = make_sandbox(root)
    spec = SPEC.format(health=sandbox.health_dir / "status", hooks=root / "post-deploy.log")
    fleet = DemoFleet(root / "fleet.git", sandbox, HOST, spec)
    sha = fleet.commit("fleet: version 1")
    progress.event("git", f"{fleet.bare}: first commit {sha[:12]} (fake NixOS version 1)")
    progress.waiting("nix build of the first system (fake NixOS, real Nix)")
    first = _nix_build(fleet.flake_ref(sha))
    progress.done_waiting()
    install_system(sandbox, first)
    progress.event("demo", f"installed and booted {first}")
    config = root / "agent.toml"
    public_key = prebuilt_act.make_key(root)
    config.write_text(
        _agent_toml(root, sockets, sandbox, fleet, trace_url)
        + prebuilt_act.nix_section(root, public_key)
    )
    stage = Stage(root, sandbox, fleet, config, sockets)
    stage.processes["helper"] = start(stage, "helper", ["pullnix-helper", "--config", str(config)])
    wait(progress, "the helper to listen", lambda: answers(stage.helper.ping))
    progress.event(
        "helper",
        f"pullnix-helper listening on {sockets / 'helper.sock'} "
        f"(pid {stage.processes['helper'].pid})",
    )
    stage.processes["agent"] = start(stage, "agent", ["pullnix", "--config", str(config), "agent"])
    wait(progress, "the agent's local API", lambda: answers(stage.agent.ping))
    progress.event(
        "agent", f"pullnix agent running (pid {stage.processes['agent'].pid}), watching {fleet.url}"
    )
    follow(
        stage,
        progress,
        f"the agent to adopt {sha[:12]}",
        lambda s: s.get("lastAppliedRevision") == sha,
    )
    return stage


def _agent_toml(
    root: Path, sockets: Path, sandbox: Sandbox, fleet: DemoFleet, trace_url: str
) -> str:
    return f"""\
# The demo machine's config: everything under {root}.
host = "{HOST}"
state_dir = "{root / "agent-state"}"

[source]
urls = ["{fleet.url}"]
branch = "main"

[system]
profile = "{sandbox.profile}"
current_system = "{sandbox.current_system}"
booted_system = "{sandbox.booted_system}"
keep_generations = 5

[helper]
socket = "{sockets / "helper.sock"}"
state_dir = "{root / "helper-state"}"
profile = "{root / "helper-profile" / "helper"}"
agent_uids = [{os.getuid()}]

[agent]
socket = "{sockets / "agent.sock"}"

[triggers]
interval = "1h"
jitter = "0s"

[telemetry]
trace_url = "{trace_url}"
"""


# -- acts 1 to 4 -------------------------------------------------------------------------


def _tell(stage: Stage, progress: Progress) -> None:
    fleet = stage.fleet
    progress.act("Act 1: a change is pushed; the machine converges by itself")
    good = fleet.commit("fleet: version 2", version="2")
    progress.event("git", f"pushed {good[:12]} (fake NixOS version 2)")
    follow(
        stage,
        progress,
        f"the machine to converge on {good[:12]}",
        lambda s: s.get("lastAppliedRevision") == good,
    )
    running = os.readlink(stage.sandbox.current_system)
    progress.event("demo", f"running {running}", "ok")

    progress.act("Act 2: a change that breaks the machine's health is pushed")
    bad = fleet.commit("fleet: version 3 (its health check fails)", version="3", health="broken")
    progress.event("git", f"pushed {bad[:12]} (fake NixOS version 3, health broken)")
    entry = follow(
        stage,
        progress,
        f"the helper's verdict on {bad[:12]}",
        lambda s: _history_has(s, bad, "RolledBack"),
    )
    now = os.readlink(stage.sandbox.current_system)
    if now != running:
        raise DemoFailed(f"after the rollback the machine runs {now}, not {running}")
    progress.event("demo", f"rolled back by itself: still running {now}", "ok")
    checks = ", ".join(
        f"{c['name']} {'ok' if c.get('ok') else 'FAILED'}" for c in entry.get("healthChecks") or []
    )
    progress.event("demo", f"health checks of {bad[:12]}: {checks}")

    progress.act("Act 3: what an operator sees")
    for command in (["status"], ["history"]):
        progress.say(f"$ pullnix {' '.join(command)}")
        progress.say(cli(stage, *command).rstrip())
        progress.say()
    progress.say("The post-deploy hook ran for each deploy:")
    progress.say(tail(stage.hooks_log, 10))
    _explain_traces(stage, progress)
    prebuilt_act.act(stage, progress, HOST)


def _explain_traces(stage: Stage, progress: Progress) -> None:
    history = [e for e in _status(stage).get("history", []) if e.get("traceId")]
    endpoint = _otlp_endpoint()
    trace_url = load_machine_config(stage.config).telemetry.trace_url  # as the agent reads it
    progress.say(
        "\nTraces: one per deploy, with every step (fetch, verify, build, the helper's "
        "activation, each health check, commit or rollback)."
    )
    if endpoint:
        progress.say(
            f"They were sent over OTLP to {endpoint}; open each deploy's trace in Jaeger "
            "(`pullnix history --wide` shows the same links):"
        )
    else:
        progress.say(
            "No OTLP endpoint was set, so they were not exported. To see them in "
            "Jaeger (examples/jaeger/), run Jaeger all-in-one and then:\n"
            "  OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 pullnix demo\n"
            "The trace ids the history keeps:"
        )
    for entry in history:
        link = trace_link(trace_url, entry["traceId"]) or entry["traceId"]
        progress.say(f"  {entry['result']:<10}  {str(entry['revision'])[:12]}  {link}")


def _history_has(status: dict[str, Any], revision: str, result: str) -> bool:
    history = status.get("history") or []
    return (
        bool(history)
        and history[0].get("revision") == revision
        and history[0].get("result") == result
    )


def _status(stage: Stage) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(cli(stage, "status", "--json", check=False))
    return dict(doc.get("status", {}))


def _nix_build(flake_ref: str) -> str:
    done = subprocess.run(
        ["nix", "build", "--no-link", "--json", f"{flake_ref}#{toplevel_attr(HOST)}"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        raise DemoFailed(f"nix build of the first system failed:\n{done.stderr[-2000:]}")
    return str(json.loads(done.stdout)[0]["outputs"]["out"])
