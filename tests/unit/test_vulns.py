"""The vulnix gate's rule, as tables: what is new, what counts, what a whitelist accepts."""

from __future__ import annotations

import json
from datetime import date

import pytest

from reconciler.core.vulns import (
    ScanFailure,
    Vulnerability,
    Whitelist,
    WhitelistInvalid,
    WhitelistRule,
    describe_refusal,
    interpret_vulnix,
    new_vulnerabilities,
    parse_whitelist,
)

TODAY = date(2026, 6, 1)

CRIT = Vulnerability("CVE-2026-0001", "openssl", "1.1.1t", cvss_v3=9.8)
LOW = Vulnerability("CVE-2026-0002", "openssl", "1.1.1t", cvss_v3=5.0)
V2_HIGH = Vulnerability("CVE-2026-0003", "openssl", "1.1.1t", cvss_v2=7.5)
V2_LOW = Vulnerability("CVE-2026-0004", "libxml2", "2.10.3", cvss_v2=4.3)
V3_OVER_V2 = Vulnerability("CVE-2026-0005", "libxml2", "2.10.3", cvss_v3=6.1, cvss_v2=9.3)
UNSCORED = Vulnerability("CVE-2026-0006", "libxml2", "2.10.3")
ZLIB = Vulnerability("CVE-2026-0007", "zlib", "1.2.13", cvss_v3=9.1)
EXACT = Vulnerability("CVE-2026-0008", "curl", "8.0.0", cvss_v3=7.0)
# the same CVE in the same package at another version
CRIT_UPGRADED = Vulnerability("CVE-2026-0001", "openssl", "1.1.1u", cvss_v3=9.8)
# the same CVE id in another package
CRIT_ELSEWHERE = Vulnerability("CVE-2026-0001", "openssl-legacy", "1.0.2", cvss_v3=9.8)

NONE = Whitelist()


def rules(*rs: WhitelistRule) -> Whitelist:
    return Whitelist(rs)


@pytest.mark.parametrize(
    ("old", "new", "threshold", "whitelist", "expected"),
    [
        # nothing in the candidate
        ((), (), 7.0, NONE, []),
        # a first deploy: everything at or above the threshold is new
        ((), (CRIT, LOW, ZLIB), 7.0, NONE, [CRIT, ZLIB]),
        # the threshold is inclusive
        ((), (EXACT,), 7.0, NONE, [EXACT]),
        ((), (EXACT,), 7.1, NONE, []),
        # at 10 only a perfect 10 (or an unscored one) counts
        ((), (CRIT, ZLIB), 10.0, NONE, []),
        # what the running system already has does not count
        ((ZLIB,), (CRIT, ZLIB), 7.0, NONE, [CRIT]),
        ((CRIT, ZLIB), (CRIT, LOW, ZLIB), 0.0, NONE, [LOW]),
        # an upgrade that keeps a CVE brings nothing new
        ((CRIT,), (CRIT_UPGRADED,), 7.0, NONE, []),
        # the same CVE in a package the running system lacks is new
        ((CRIT,), (CRIT, CRIT_ELSEWHERE), 7.0, NONE, [CRIT_ELSEWHERE]),
        # a vulnerability fixed by the candidate is simply gone
        ((CRIT, ZLIB), (ZLIB,), 7.0, NONE, []),
        # CVSS v2 when there is no v3
        ((), (V2_HIGH, V2_LOW), 7.0, NONE, [V2_HIGH]),
        # v3 wins over v2
        ((), (V3_OVER_V2,), 7.0, NONE, []),
        ((), (V3_OVER_V2,), 6.0, NONE, [V3_OVER_V2]),
        # no score at all counts, even at 10, and comes first
        ((), (CRIT, UNSCORED), 10.0, NONE, [UNSCORED]),
        ((), (LOW, CRIT, UNSCORED, ZLIB), 7.0, NONE, [UNSCORED, CRIT, ZLIB]),
        # duplicates (two derivations of one name) are listed once
        ((), (CRIT, CRIT), 7.0, NONE, [CRIT]),
        # whitelisted by package and version, one CVE
        (
            (),
            (CRIT, ZLIB),
            7.0,
            rules(WhitelistRule("openssl", "1.1.1t", frozenset({CRIT.cve_id}))),
            [ZLIB],
        ),
        # by package, any version
        ((), (CRIT, ZLIB), 7.0, rules(WhitelistRule("openssl")), [ZLIB]),
        # by CVE for any package
        (
            (),
            (CRIT, CRIT_ELSEWHERE, ZLIB),
            7.0,
            rules(WhitelistRule("*", None, frozenset({CRIT.cve_id}))),
            [ZLIB],
        ),
        # a rule for another version does not cover
        ((), (CRIT,), 7.0, rules(WhitelistRule("openssl", "1.1.1u")), [CRIT]),
        # a rule for another CVE of the package does not cover
        ((), (CRIT,), 7.0, rules(WhitelistRule("openssl", None, frozenset({LOW.cve_id}))), [CRIT]),
        # an unscored one can be whitelisted
        ((), (UNSCORED,), 7.0, rules(WhitelistRule("libxml2")), []),
    ],
)
def test_new_vulnerabilities(
    old: tuple[Vulnerability, ...],
    new: tuple[Vulnerability, ...],
    threshold: float,
    whitelist: Whitelist,
    expected: list[Vulnerability],
) -> None:
    assert new_vulnerabilities(old, new, threshold, whitelist) == expected


WL_EXAMPLE = """
# accepted for now
["openssl-1.1.1t"]
cve = ["CVE-2026-0001", "CVE-2026-0002"]
until = "2026-12-31"
comment = "no TLS server here"
issue_url = "https://example.org/issues/1"

["zlib"]
comment = "every CVE of zlib"

["*"]
cve = "CVE-2026-0009"

["libxml2-2.10.3"]
cve = ["CVE-2026-0006"]
until = 2026-06-01
status = "ignored"

["curl-8.0.0"]
cve = ["CVE-2026-0008"]
until = 2026-06-02
"""


def test_whitelist_file_reads_into_rules_in_force_today() -> None:
    whitelist = parse_whitelist(WL_EXAMPLE, source="wl.toml", today=TODAY)
    assert whitelist.rules == (
        WhitelistRule("openssl", "1.1.1t", frozenset({"CVE-2026-0001", "CVE-2026-0002"})),
        WhitelistRule("zlib"),
        WhitelistRule("*", None, frozenset({"CVE-2026-0009"})),
        # libxml2's rule stopped on its `until` date (as in vulnix)
        WhitelistRule("curl", "8.0.0", frozenset({"CVE-2026-0008"})),
    )
    assert parse_whitelist("", source="wl.toml", today=TODAY) == Whitelist()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[openssl", "not valid TOML"),
        ('openssl = "x"', "got a plain key"),
        # an unquoted header with dots makes nested tables
        ("[openssl-1.1.1t]\ncve = []", "quote the package name"),
        # a misspelt key would whitelist every CVE of the package in vulnix
        ('["openssl"]\ncves = ["CVE-2026-0001"]', "unknown key 'cves'"),
        ('["openssl"]\ncve = ["2026-0001"]', "'2026-0001' is not a CVE id"),
        ('["openssl"]\ncve = [1]', "cve: expected a string or a list of strings"),
        ('["*"]\ncomment = "everything"', 'every package ("*") must list its cve'),
        ('["openssl"]\nuntil = "next year"', "until must be a date"),
        ('["openssl"]\nuntil = 2026-12-31T00:00:00', "until must be a date"),
    ],
)
def test_a_malformed_whitelist_says_where_and_what(text: str, message: str) -> None:
    with pytest.raises(WhitelistInvalid, match=r"^wl\.toml[:,] ") as info:
        parse_whitelist(text, source="wl.toml", today=TODAY)
    assert message in str(info.value)
    assert info.value.reason == "WhitelistInvalid"


def report(*entries: dict[str, object]) -> str:
    return json.dumps(list(entries))


OPENSSL_ENTRY: dict[str, object] = {
    "name": "openssl-1.1.1t",
    "pname": "openssl",
    "version": "1.1.1t",
    "derivation": "/nix/store/x-openssl-1.1.1t.drv",
    "affected_by": ["CVE-2026-0001", "CVE-2026-0003"],
    "whitelisted": [],
    "cvssv3_basescore": {"CVE-2026-0001": 9.8},
    "description": {},
}
TRACEBACK = (
    'Traceback (most recent call last):\n  File "nvd.py", line 1\n'
    "requests.exceptions.ConnectionError: HTTPConnectionPool(host='127.0.0.1')\n"
)


@pytest.mark.parametrize(
    ("returncode", "stdout", "stderr", "expected"),
    [
        (0, "[]\n", "", ()),
        (
            2,
            report(OPENSSL_ENTRY),
            "",
            (
                Vulnerability("CVE-2026-0001", "openssl", "1.1.1t", cvss_v3=9.8),
                Vulnerability("CVE-2026-0003", "openssl", "1.1.1t"),
            ),
        ),
        # a v2 score is used if vulnix ever reports one
        (
            2,
            report({**OPENSSL_ENTRY, "cvssv2_basescore": {"CVE-2026-0003": 7}}),
            "",
            (
                Vulnerability("CVE-2026-0001", "openssl", "1.1.1t", cvss_v3=9.8),
                Vulnerability("CVE-2026-0003", "openssl", "1.1.1t", cvss_v2=7.0),
            ),
        ),
        # exit 2 is also vulnix's own error (and click's usage error): no report, no pass
        (
            2,
            "",
            "Error: Invalid value for '[PATH]...': Path '/x' does not exist.\n",
            ScanFailure(
                "scan", 2, "Error: Invalid value for '[PATH]...': Path '/x' does not exist."
            ),
        ),
        (2, "", "", ScanFailure("scan", 2, "no output on stderr")),
        # the feed could not be fetched
        (
            1,
            "",
            TRACEBACK,
            ScanFailure(
                "feed",
                1,
                "Traceback (most recent call last):; "
                'File "nvd.py", line 1; requests.exceptions.'
                "ConnectionError: HTTPConnectionPool(host='127.0.0.1')",
            ),
        ),
        # any other exit is a failure, whatever stdout says
        (
            1,
            "[]",
            "Traceback\nKeyError: 'x'\n",
            ScanFailure("crash", 1, "Traceback; KeyError: 'x'"),
        ),
        (-9, "", "", ScanFailure("crash", -9, "no output on stderr")),
        (3, "", "Usage: vulnix ...", ScanFailure("crash", 3, "Usage: vulnix ...")),
        # exit 0 with something that is not a report
        (
            0,
            "Found no advisories. Excellent!",
            "",
            ScanFailure(
                "crash", 0, "unreadable report: not JSON: Expecting value: line 1 column 1 (char 0)"
            ),
        ),
        (0, "{}", "", ScanFailure("crash", 0, "unreadable report: not a JSON list")),
        (0, "[1]", "", ScanFailure("crash", 0, "unreadable report: an entry is not an object")),
        (
            0,
            report({"pname": "x"}),
            "",
            ScanFailure(
                "crash", 0, "unreadable report: an entry lacks pname, version or affected_by"
            ),
        ),
        (
            0,
            report({**OPENSSL_ENTRY, "cvssv3_basescore": {"CVE-2026-0001": "high"}}),
            "",
            ScanFailure(
                "crash", 0, "unreadable report: scores are not a mapping of CVE ids to numbers"
            ),
        ),
    ],
)
def test_interpret_vulnix(
    returncode: int, stdout: str, stderr: str, expected: tuple[Vulnerability, ...] | ScanFailure
) -> None:
    assert interpret_vulnix(returncode, stdout, stderr) == expected


def test_refusal_names_each_cve_and_shows_how_to_whitelist() -> None:
    message = describe_refusal("cves", [UNSCORED, CRIT, V2_HIGH], 7.0, "vulnix-whitelist.toml")
    assert message == "\n".join(
        [
            "gate 'cves' refused the new system: it brings 3 vulnerabilities at or above CVSS 7 "
            "that the running system does not have:",
            "  CVE-2026-0006  libxml2 2.10.3  no CVSS score in vulnix's report (counted as severe)",
            "  CVE-2026-0001  openssl 1.1.1t  CVSS 9.8",
            "  CVE-2026-0003  openssl 1.1.1t  CVSS v2 7.5",
            "To accept them, fix or update the packages, or add them to vulnix-whitelist.toml at "
            "the repository root (vulnix's format):",
            '  ["libxml2-2.10.3"]',
            '  cve = ["CVE-2026-0006"]',
            '  comment = "why this is acceptable here"',
            '  ["openssl-1.1.1t"]',
            '  cve = ["CVE-2026-0001", "CVE-2026-0003"]',
            '  comment = "why this is acceptable here"',
        ]
    )


def test_refusal_is_bounded_and_says_how_to_start_a_whitelist() -> None:
    many = [Vulnerability(f"CVE-2026-{n:04d}", "openssl", "1.1.1t", cvss_v3=9.0) for n in range(25)]
    message = describe_refusal("cves", many, 7.5, None, limit=10)
    assert "it brings 25 vulnerabilities at or above CVSS 7.5" in message
    assert "CVE-2026-0009" in message
    assert "CVE-2026-0010" not in message
    assert "  ... and 15 more" in message
    assert "set `whitelist: vulnix-whitelist.toml` on this gate" in message
    assert len(message.splitlines()) == 1 + 10 + 1 + 1 + 3
    one = describe_refusal("cves", [CRIT], 7.0, None)
    assert "it brings 1 vulnerability at or above" in one
