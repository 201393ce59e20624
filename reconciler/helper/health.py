"""Health checks: does the newly activated generation work?

Owns running one check spec (`protocol.CheckSpec`) against the machine, with
its timeout, retries and interval, and turning the outcome into a
`operation.CheckResult`. Kinds: gitRemote (the machine's configured remotes
still answer `git ls-remote`), http, tcp, systemd (`systemctl is-active`),
command (exit 0). The http check's request runs in a child interpreter, so
the long-lived helper never loads urllib and ssl (see `_HTTP_GET`).

Must not: decide what a failure leads to (that is `machine.py`); print
secrets (the token goes to git through its environment, never argv or logs).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from reconciler.common.child import ChildTimeout, run_bounded
from reconciler.common.config import SourceConfig
from reconciler.common.operation import CheckResult, iso
from reconciler.common.output import short_message, shorten
from reconciler.common.protocol import CheckSpec
from reconciler.common.urls import redact, redact_url

_BODY_LIMIT = 1024 * 1024
# The http check's GET runs in a child interpreter (standard library only, isolated):
# urllib with http.client, email and ssl would add ~10 MB to the helper for good (idle
# RSS 23 MB instead of 15), for a request made once per deploy. Prints one JSON line.
_HTTP_GET = """
import json, sys, urllib.error, urllib.request
url, timeout, limit = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
try:
    with opener.open(url, timeout=timeout) as response:
        status, body = response.status, response.read(limit)
except urllib.error.HTTPError as exc:
    status, body = exc.code, exc.read(limit)
    exc.close()
except (urllib.error.URLError, OSError, ValueError) as exc:
    print(json.dumps({"error": str(getattr(exc, "reason", exc))}))
    raise SystemExit(0)
print(json.dumps({"status": status, "body": body.decode(errors="replace")}))
"""
_HTTP_GRACE = 5.0  # on top of the check's timeout: the child's start, and slow trickles
# The child's one JSON line: a body of _BODY_LIMIT bytes, escaped, fits (\uXXXX is 6 bytes).
_HTTP_ANSWER_LIMIT = 6 * _BODY_LIMIT + 4096


class CheckFailed(Exception):
    """One attempt failed; the message says what was seen."""


def run_check(
    spec: CheckSpec, source: SourceConfig, clock: Callable[[], float] = time.time
) -> CheckResult:
    """Run `spec` until it passes or its retries are spent."""
    started = clock()
    attempts, message = 0, ""
    for attempt in range(spec.retries + 1):
        attempts = attempt + 1
        try:
            message = _ATTEMPT[spec.kind](spec, source)
            return CheckResult(
                spec.name, spec.kind, True, message, attempts, iso(started), iso(clock())
            )
        except CheckFailed as exc:
            message = str(exc)
        if attempt < spec.retries:
            time.sleep(spec.interval)
    suffix = f" (after {attempts} attempts)" if attempts > 1 else ""
    return CheckResult(
        spec.name, spec.kind, False, message + suffix, attempts, iso(started), iso(clock())
    )


def _http(spec: CheckSpec, _source: SourceConfig) -> str:
    url, expect = spec.param("url"), spec.param("expectStatus", 200)
    argv = [sys.executable, "-I", "-S", "-c", _HTTP_GET, url, repr(spec.timeout), str(_BODY_LIMIT)]
    try:
        done = run_bounded(
            argv, timeout=spec.timeout + _HTTP_GRACE, stdout_limit=_HTTP_ANSWER_LIMIT
        )
    except ChildTimeout:
        raise CheckFailed(f"GET {url}: no answer within {spec.timeout:g}s") from None
    except OSError as exc:
        raise CheckFailed(f"GET {url}: cannot run {sys.executable}: {exc.strerror}") from None
    try:
        answer = json.loads(done.stdout)
    except ValueError:
        raise CheckFailed(
            f"GET {url}: the request's interpreter exited {done.returncode}"
            + (f": {done.message}" if done.message else "")
        ) from None
    if "error" in answer:
        raise CheckFailed(f"GET {url}: {answer['error']}")
    status, body = int(answer["status"]), str(answer["body"])
    if status != expect:
        raise CheckFailed(f"GET {url}: status {status}, expected {expect}")
    pattern = spec.param("bodyRegex")
    if pattern and not re.search(pattern, body):
        raise CheckFailed(f"GET {url}: status {status} but the body does not match {pattern!r}")
    return f"GET {url}: status {status}"


def _tcp(spec: CheckSpec, _source: SourceConfig) -> str:
    host, port = spec.param("host"), spec.param("port")
    try:
        with socket.create_connection((host, port), timeout=spec.timeout):
            return f"connected to {host}:{port}"
    except OSError as exc:
        raise CheckFailed(f"connect {host}:{port}: {exc.strerror or exc}") from None


def _command(spec: CheckSpec, _source: SourceConfig) -> str:
    argv = list(spec.param("argv"))
    shown = shorten(shlex.join(argv), 200)
    try:
        done = run_bounded(argv, timeout=spec.timeout)
    except FileNotFoundError:
        raise CheckFailed(f"{shorten(argv[0], 200)}: no such command") from None
    except ChildTimeout:
        raise CheckFailed(f"{shown}: still running after {spec.timeout:g}s") from None
    except OSError as exc:
        raise CheckFailed(f"{shorten(argv[0], 200)}: cannot run: {exc.strerror}") from None
    if done.returncode != 0:
        raise CheckFailed(
            f"{shown} exited {done.returncode}" + (f": {done.message}" if done.message else "")
        )
    return f"{shown} exited 0"


def _systemd(spec: CheckSpec, _source: SourceConfig) -> str:
    systemctl = shutil.which("systemctl")
    if systemctl is None:
        raise CheckFailed("systemctl not found: systemd checks need systemd on this machine")
    if not os.path.isdir("/run/systemd/system"):
        raise CheckFailed(
            "systemd is not running as the init system (no /run/systemd/system); cannot check units"
        )
    bad = []
    for unit in spec.param("units"):
        try:
            done = run_bounded(
                [systemctl, "is-active", unit], timeout=spec.timeout, stdout_limit=256
            )
        except ChildTimeout:
            bad.append(f"{unit}: systemctl did not answer in {spec.timeout:g}s")
            continue
        state = short_message(done.stdout, 64) or "unknown"
        if done.returncode != 0 or state != "active":
            bad.append(f"{unit} is {state}")
    if bad:
        raise CheckFailed("; ".join(bad))
    return f"active: {', '.join(spec.param('units'))}"


def _git_remote(spec: CheckSpec, source: SourceConfig) -> str:
    if not source.urls:
        raise CheckFailed("no [source] urls in the machine config to check")
    errors = []
    for url in source.urls:
        try:
            _ls_remote(url, source, spec.timeout)
            return f"{redact_url(url)} answers"
        except CheckFailed as exc:
            errors.append(redact(str(exc), url))
    raise CheckFailed("no remote answers: " + "; ".join(errors))


def git_environment(url: str, source: SourceConfig) -> dict[str, str]:
    """The environment for git to reach `url` with this machine's credentials."""
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true"}
    # Never prompt, never trust an unknown host key.
    ssh = ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"]
    if source.ssh_key_file:
        ssh += ["-i", str(source.ssh_key_file), "-o", "IdentitiesOnly=yes"]
    if source.known_hosts_file:
        ssh += ["-o", f"UserKnownHostsFile={source.known_hosts_file}"]
    env["GIT_SSH_COMMAND"] = shlex.join(ssh)
    if source.token_file and url.startswith(("http://", "https://")):
        token = Path(source.token_file).read_text(encoding="utf-8").strip()
        # Same as `git -c http.extraHeader=...`, but kept out of argv (and so out of ps).
        env.update(
            {
                "GIT_CONFIG_COUNT": "1",
                "GIT_CONFIG_KEY_0": "http.extraHeader",
                "GIT_CONFIG_VALUE_0": f"Authorization: Bearer {token}",
            }
        )
    return env


def _ls_remote(url: str, source: SourceConfig, timeout: float) -> None:
    parts = urlsplit(url)
    if parts.scheme == "file" or (not parts.scheme and url.startswith("/")):
        path = parts.path if parts.scheme else url
        if not os.path.exists(path):
            raise CheckFailed(f"{url}: {path} does not exist")
    try:
        env = git_environment(url, source)
    except OSError as exc:
        raise CheckFailed(f"{url}: cannot read token_file: {exc.strerror}") from None
    try:
        done = run_bounded(["git", "ls-remote", "--heads", "--", url], env=env, timeout=timeout)
    except ChildTimeout:
        raise CheckFailed(f"{url}: no answer in {timeout:g}s") from None
    except FileNotFoundError:
        raise CheckFailed("git not found on PATH") from None
    if done.returncode != 0:
        raise CheckFailed(
            f"{url}: git ls-remote exited {done.returncode}"
            + (f": {done.message}" if done.message else "")
        )


_ATTEMPT: dict[str, Callable[[CheckSpec, SourceConfig], str]] = {
    "http": _http,
    "tcp": _tcp,
    "command": _command,
    "systemd": _systemd,
    "gitRemote": _git_remote,
}
