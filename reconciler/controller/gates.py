"""Gates: checks on a built system before it is activated; any refusal stops the deploy.

Owns running the spec's `gates` after the build and before the helper is
asked to act. A `command` gate runs a program of the repository (argv, no
shell) in a checkout of the commit being deployed, with PULLNIX_NEW_SYSTEM and
PULLNIX_CURRENT_SYSTEM set; a non-zero exit refuses. A `vulnix` gate runs
`vulnix --json` on the new system and on the running one, with the NVD feed
from `VulnixSettings` (a mirror, a cache dir in the agent's state dir), and
refuses what `core.vulns.new_vulnerabilities` finds; a feed it cannot fetch
is a TransientError (retried later), never a pass.

Must not: activate anything; decide what counts as a new vulnerability (that
is `core.vulns`); a gate only says yes or no.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from reconciler.common.child import ChildTimeout, run_bounded
from reconciler.common.output import last_lines
from reconciler.core.errors import CommitFailure, TransientError
from reconciler.core.model import Command, Gate, VulnixGate
from reconciler.core.vulns import (
    ScanFailure,
    Vulnerability,
    Whitelist,
    WhitelistInvalid,
    describe_refusal,
    interpret_vulnix,
    new_vulnerabilities,
    parse_whitelist,
)

GATE_TIMEOUT = 600.0
_TAIL = 20  # lines of a refusing gate's output in its message (each at most 400 characters)
#: The most of vulnix's JSON report read (a whole system's report is far smaller).
VULNIX_REPORT_LIMIT = 64 * 1024 * 1024
#: Where the vulnix gate fetches the NVD feed from, until the machine config has a key for it.
MIRROR_ENV = "PULLNIX_VULNIX_MIRROR"


@dataclass(frozen=True)
class VulnixSettings:
    """How the vulnix gate runs vulnix. None means vulnix's own default: the mirror is
    NVD's feed URL, the cache `~/.cache/vulnix`. The first run downloads six years of the
    feed, hence the long timeout; later runs use the cache (refreshed after two hours)."""

    mirror: str | None = None
    cache_dir: Path | None = None
    program: str = "vulnix"
    timeout: float = 1800.0

    @classmethod
    def from_environ(
        cls, environ: Mapping[str, str] | None = None, cache_dir: Path | None = None
    ) -> VulnixSettings:
        """Settings with the mirror from PULLNIX_VULNIX_MIRROR (unset or empty: NVD's)."""
        env = os.environ if environ is None else environ
        return cls(mirror=env.get(MIRROR_ENV) or None, cache_dir=cache_dir)


class GateRefused(CommitFailure):
    reason = "GateRefused"
    failure = "GateRefused"


def run_gates(
    gates: Sequence[Gate],
    new_system: str,
    current_system: str | None,
    checkout: Path,
    *,
    vulnix: VulnixSettings | None = None,
) -> None:
    """Run every gate in order; raise GateRefused naming the first that refuses.

    `vulnix` defaults to `VulnixSettings.from_environ()`.
    """
    for gate in gates:
        kind = gate.kind
        if isinstance(kind, Command):
            _command_gate(gate.name, kind, new_system, current_system, checkout)
        else:
            settings = vulnix if vulnix is not None else VulnixSettings.from_environ()
            _vulnix_gate(gate.name, kind, new_system, current_system, checkout, settings)


def _command_gate(
    name: str, command: Command, new_system: str, current_system: str | None, checkout: Path
) -> None:
    argv = list(command.argv)
    program = checkout / argv[0]
    if "/" in argv[0] and not argv[0].startswith("/") and program.is_file():
        argv[0] = str(program)
    env = {
        **os.environ,
        "PULLNIX_NEW_SYSTEM": new_system,
        "PULLNIX_CURRENT_SYSTEM": current_system or "",
    }
    try:
        done = run_bounded(argv, cwd=checkout, env=env, timeout=GATE_TIMEOUT)
    except FileNotFoundError:
        raise GateRefused(
            f"gate {name!r}: {command.argv[0]!r} not found (relative paths are "
            "taken from the repository root)"
        ) from None
    except PermissionError:
        raise GateRefused(f"gate {name!r}: {command.argv[0]!r} is not executable") from None
    except ChildTimeout:
        raise TransientError(
            f"gate {name!r}: no answer after {GATE_TIMEOUT:g}s", reason="GateTimeout"
        ) from None
    if done.returncode != 0:
        output = last_lines(done.tail, _TAIL)
        detail = ("; output:\n" + "\n".join(output)) if output else ""
        raise GateRefused(f"gate {name!r} refused the new system (exit {done.returncode}){detail}")


def _vulnix_gate(
    name: str,
    gate: VulnixGate,
    new_system: str,
    current_system: str | None,
    checkout: Path,
    settings: VulnixSettings,
) -> None:
    whitelist = _whitelist(name, gate.whitelist, checkout)
    if current_system and os.path.realpath(current_system) == os.path.realpath(new_system):
        return  # the running system itself: nothing in it is new
    new = _scan(name, "the new system", new_system, settings)
    old = _scan(name, "the running system", current_system, settings) if current_system else ()
    found = new_vulnerabilities(old, new, gate.max_new_severity, whitelist)
    if found:
        raise GateRefused(describe_refusal(name, found, gate.max_new_severity, gate.whitelist))


def _whitelist(name: str, relative: str | None, checkout: Path) -> Whitelist:
    if relative is None:
        return Whitelist()
    root = checkout.resolve()
    path = (root / relative).resolve()
    where = f"gate {name!r}: whitelist {relative!r}"
    if not path.is_relative_to(root):
        raise WhitelistInvalid(
            f"{where} is outside the repository; give a path relative to the repository root"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise WhitelistInvalid(
            f"{where} is not a file in this commit (paths are relative to "
            "the repository root); add it or remove `whitelist`"
        ) from None
    except UnicodeDecodeError:
        raise WhitelistInvalid(f"{where} is not UTF-8 text") from None
    return parse_whitelist(text, source=where, today=datetime.now(UTC).date())


def _scan(
    name: str,
    what: str,
    system: str,
    settings: VulnixSettings,
) -> tuple[Vulnerability, ...]:
    argv = [settings.program, "--json"]
    if settings.mirror:
        argv += ["--mirror", settings.mirror]
    if settings.cache_dir is not None:
        settings.cache_dir.mkdir(parents=True, exist_ok=True)
        argv += ["--cache-dir", str(settings.cache_dir)]
    try:
        done = run_bounded(
            [*argv, "--", system], timeout=settings.timeout, stdout_limit=VULNIX_REPORT_LIMIT
        )
    except FileNotFoundError:
        raise GateRefused(
            f"gate {name!r}: {settings.program!r} not found; install vulnix on "
            "this machine (on the agent's PATH) or remove the gate",
            reason="VulnixMissing",
        ) from None
    except ChildTimeout:
        raise TransientError(
            f"gate {name!r}: vulnix gave no answer about {what} after {settings.timeout:g}s",
            reason="VulnixTimeout",
        ) from None
    result = interpret_vulnix(
        done.returncode,
        done.stdout.decode(errors="replace"),
        "\n".join(last_lines(done.stderr_tail, _TAIL)),
    )
    if isinstance(result, ScanFailure):
        raise _failure(name, what, system, settings, result)
    return result


def _failure(
    name: str, what: str, system: str, settings: VulnixSettings, failure: ScanFailure
) -> Exception:
    head = f"gate {name!r}: vulnix (exit {failure.returncode}) "
    if failure.kind == "feed":
        return TransientError(
            f"{head}could not fetch the NVD feed from {settings.mirror or 'NVD'} "
            f"({failure.detail}); the gate does not pass until it can (set {MIRROR_ENV} "
            "to a reachable mirror)",
            reason="VulnixFeedUnreachable",
        )
    if failure.kind == "scan":
        return GateRefused(
            f"{head}could not scan {what} {system}: {failure.detail}", reason="VulnixFailed"
        )
    return TransientError(
        f"{head}failed scanning {what} {system}: {failure.detail}", reason="VulnixFailed"
    )
