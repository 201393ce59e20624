"""The vulnix gate's rule: which vulnerabilities a candidate brings that the running system lacks.

Owns, as pure functions over values: reading vulnix's `--json` report and exit
code into vulnerabilities or a classified failure (`interpret_vulnix`),
reading a whitelist in vulnix's TOML format (`parse_whitelist`), the rule
itself (`new_vulnerabilities`) and the refusal message (`describe_refusal`).

The rule: a vulnerability is new when the running system has no vulnerability
with the same CVE id in a package of the same name (an upgrade that keeps a
CVE brings nothing new). It counts when its score - CVSS v3 base score,
falling back to v2 - is at or above the threshold, or when it has no score at
all (unknown severity never passes silently), and no whitelist rule covers it.

Must not: run vulnix, read files or the clock; the shell (`controller/gates.py`)
does, and passes `today` in.
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

from reconciler.core.errors import TerminalError

#: vulnix's exit codes: 0 no vulnerability reported, 2 some reported - or one of its
#: own errors (it exits 2 on a RuntimeError and click on a usage error), so 2 counts
#: as a report only when stdout holds one. Anything else is a failure.
VULNIX_CLEAN, VULNIX_FOUND = 0, 2

_CVE = re.compile(r"^CVE-\d{4}-\d{4,}$")
# vulnix (like Nix's parseDrvName) splits "name-version" at the first dash before a digit.
_NAME_VERSION = re.compile(r"^(\S+?)-([0-9]\S*)$")
_RULE_KEYS = frozenset({"cve", "until", "comment", "issue_url", "status"})
# Python's traceback lines naming a failure to fetch or read the feed.
_FEED_ERRORS = (
    "requests.exceptions.",
    "urllib3.exceptions.",
    "gzip.BadGzipFile",
    "json.decoder.JSONDecodeError",
    "zlib.error",
)
_DETAIL_LINES = 3


class WhitelistInvalid(TerminalError):
    reason = "WhitelistInvalid"


@dataclass(frozen=True)
class Vulnerability:
    """One CVE affecting one package of a closure, as vulnix reports it."""

    cve_id: str
    package: str
    version: str
    cvss_v3: float | None = None
    cvss_v2: float | None = None

    @property
    def score(self) -> float | None:
        """CVSS v3 base score, else v2, else None (unknown)."""
        return self.cvss_v3 if self.cvss_v3 is not None else self.cvss_v2

    @property
    def name(self) -> str:
        return f"{self.package}-{self.version}"


@dataclass(frozen=True)
class ScanFailure:
    """vulnix did not produce a report: the feed could not be fetched ("feed"), it could
    not read the closure or its arguments ("scan"), or it crashed otherwise ("crash")."""

    kind: Literal["feed", "scan", "crash"]
    returncode: int
    detail: str


@dataclass(frozen=True)
class WhitelistRule:
    """A whitelist section: `package` ("*" for any) at `version` (None: any), for the CVEs
    in `cves` (empty: every CVE of the package)."""

    package: str
    version: str | None = None
    cves: frozenset[str] = frozenset()

    def covers(self, vuln: Vulnerability) -> bool:
        return (
            (self.package in ("*", vuln.package))
            and self.version in (None, vuln.version)
            and (not self.cves or vuln.cve_id in self.cves)
        )


@dataclass(frozen=True)
class Whitelist:
    rules: tuple[WhitelistRule, ...] = ()

    def covers(self, vuln: Vulnerability) -> bool:
        return any(rule.covers(vuln) for rule in self.rules)


def new_vulnerabilities(
    old: Iterable[Vulnerability],
    new: Iterable[Vulnerability],
    threshold: float,
    whitelist: Whitelist,
) -> list[Vulnerability]:
    """The vulnerabilities of `new` that refuse it, most severe first (unscored first of all)."""
    known = {(v.cve_id, v.package) for v in old}
    found: dict[tuple[str, str, str], Vulnerability] = {}
    for vuln in new:
        if (vuln.cve_id, vuln.package) in known or whitelist.covers(vuln):
            continue
        if vuln.score is not None and vuln.score < threshold:
            continue
        found.setdefault((vuln.cve_id, vuln.package, vuln.version), vuln)
    return sorted(found.values(), key=_severity_order)


def _severity_order(vuln: Vulnerability) -> tuple[float, str, str]:
    score = math.inf if vuln.score is None else vuln.score
    return (-score, vuln.cve_id, vuln.name)


def describe_refusal(
    gate: str,
    found: list[Vulnerability],
    threshold: float,
    whitelist_path: str | None,
    limit: int = 10,
) -> str:
    """What a refused deploy says: each new CVE (at most `limit`) and how to accept one."""
    shown = found[:limit]
    lines = [
        f"gate {gate!r} refused the new system: it brings {len(found)} "
        f"{'vulnerability' if len(found) == 1 else 'vulnerabilities'} at or above "
        f"CVSS {threshold:g} that the running system does not have:"
    ]
    lines += [f"  {v.cve_id}  {v.package} {v.version}  {_score_text(v)}" for v in shown]
    if len(found) > limit:
        lines.append(f"  ... and {len(found) - limit} more")
    by_name: dict[str, list[str]] = {}
    for vuln in shown:
        by_name.setdefault(vuln.name, []).append(vuln.cve_id)
    snippet = []
    for name, cves in by_name.items():
        snippet += [
            f'  ["{name}"]',
            "  cve = [" + ", ".join(f'"{c}"' for c in cves) + "]",
            '  comment = "why this is acceptable here"',
        ]
    them = "it" if len(found) == 1 else "them"
    where = (
        f"add {them} to {whitelist_path} at the repository root"
        if whitelist_path
        else "set `whitelist: vulnix-whitelist.toml` on this gate and write that file at the "
        "repository root"
    )
    lines.append(f"To accept {them}, fix or update the packages, or {where} (vulnix's format):")
    return "\n".join(lines + snippet)


def _score_text(vuln: Vulnerability) -> str:
    if vuln.cvss_v3 is not None:
        return f"CVSS {vuln.cvss_v3:g}"
    if vuln.cvss_v2 is not None:
        return f"CVSS v2 {vuln.cvss_v2:g}"
    return "no CVSS score in vulnix's report (counted as severe)"


def interpret_vulnix(
    returncode: int,
    stdout: str,
    stderr: str,
) -> tuple[Vulnerability, ...] | ScanFailure:
    """vulnix's outcome: the vulnerabilities it reported, or why there is no report."""
    if returncode in (VULNIX_CLEAN, VULNIX_FOUND):
        try:
            return parse_vulnix_report(stdout)
        except ValueError as exc:
            if returncode == VULNIX_CLEAN:
                return ScanFailure("crash", returncode, f"unreadable report: {exc}")
            return ScanFailure("scan", returncode, _detail(stderr))
    if any(marker in stderr for marker in _FEED_ERRORS):
        return ScanFailure("feed", returncode, _detail(stderr))
    return ScanFailure("crash", returncode, _detail(stderr))


def _detail(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return "; ".join(lines[-_DETAIL_LINES:]) or "no output on stderr"


def parse_vulnix_report(text: str) -> tuple[Vulnerability, ...]:
    """vulnix's `--json` output as vulnerabilities; ValueError when it is not one."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(data, list):
        raise ValueError("not a JSON list")
    found: list[Vulnerability] = []
    for entry in data:
        if not isinstance(entry, dict):
            raise ValueError("an entry is not an object")
        pname, version = entry.get("pname"), entry.get("version")
        cves = entry.get("affected_by")
        if (
            not isinstance(pname, str)
            or not isinstance(version, str)
            or not isinstance(cves, list)
            or not all(isinstance(c, str) for c in cves)
        ):
            raise ValueError("an entry lacks pname, version or affected_by")
        v3 = _scores(entry.get("cvssv3_basescore"))
        v2 = _scores(entry.get("cvssv2_basescore"))  # not in vulnix 1.10's output
        found += [Vulnerability(c, pname, version, v3.get(c), v2.get(c)) for c in cves]
    return tuple(found)


def _scores(value: Any) -> dict[str, float]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(s, int | float) and not isinstance(s, bool) for s in value.values()
    ):
        raise ValueError("scores are not a mapping of CVE ids to numbers")
    return {str(cve): float(score) for cve, score in value.items()}


def parse_whitelist(text: str, *, source: str, today: date) -> Whitelist:
    """Rules of a vulnix TOML whitelist still in force `today` (a rule stops on its `until`).

    Stricter than vulnix: an unknown key is an error (vulnix only warns, and a misspelt
    `cve` would silently accept every CVE of the package), and so is a malformed CVE id.
    """
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise WhitelistInvalid(f"{source}: not valid TOML: {exc}") from None
    rules = []
    for section, body in doc.items():
        rule = _rule(section, body, f"{source}, section [{json.dumps(section)}]", today)
        if rule is not None:
            rules.append(rule)
    return Whitelist(tuple(rules))


def _rule(section: str, body: Any, where: str, today: date) -> WhitelistRule | None:
    if not isinstance(body, dict):
        raise WhitelistInvalid(
            f'{where}: expected a table such as ["openssl-3.0.13"], got a plain key'
        )
    nested = [key for key, value in body.items() if isinstance(value, dict)]
    if nested:
        raise WhitelistInvalid(
            f"{where}: has a table inside ({nested[0]!r}); quote the "
            'package name in the header, e.g. ["openssl-1.1.1t"]'
        )
    unknown = sorted(set(body) - _RULE_KEYS)
    if unknown:
        raise WhitelistInvalid(
            f"{where}: unknown key {unknown[0]!r}; the keys are {', '.join(sorted(_RULE_KEYS))}"
        )
    cves = _strings(body.get("cve", []), f"{where}: cve")
    bad = [c for c in cves if not _CVE.match(c)]
    if bad:
        raise WhitelistInvalid(f"{where}: {bad[0]!r} is not a CVE id like CVE-2023-12345")
    if section == "*" and not cves:
        raise WhitelistInvalid(f'{where}: a rule for every package ("*") must list its cve')
    until = _until(body.get("until"), where)
    if until is not None and until <= today:
        return None
    match = _NAME_VERSION.match(section)
    package, version = (match.group(1), match.group(2)) if match else (section, None)
    return WhitelistRule(package, version, frozenset(cves))


def _strings(value: Any, where: str) -> list[str]:
    values = value if isinstance(value, list) else [value]
    if not all(isinstance(v, str) for v in values):
        raise WhitelistInvalid(f"{where}: expected a string or a list of strings")
    return list(values)


def _until(value: Any, where: str) -> date | None:
    if value is None or (isinstance(value, date) and not isinstance(value, datetime)):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise WhitelistInvalid(f"{where}: until must be a date like 2026-12-31, got {value!r}")
