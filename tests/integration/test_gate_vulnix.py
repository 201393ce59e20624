"""The vulnix gate runs the real vulnix on real Nix closures against an NVD feed served on
loopback: it refuses what the candidate newly brings, and a feed it cannot read is never a pass."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from reconciler.controller.gates import MIRROR_ENV, GateRefused, VulnixSettings, run_gates
from reconciler.core.errors import TerminalError, TransientError
from reconciler.core.model import Gate, VulnixGate
from reconciler.core.vulns import WhitelistInvalid
from tests.support.gitserve import free_port
from tests.support.nvdfeed import FeedCve, NvdFeed

FIXTURE = Path(__file__).parent.parent / "fixtures" / "vulnerable"
VULNIX = str(Path(sys.executable).parent / "vulnix")
SYSTEMS = ("current", "candidate", "currentWithOpenssl", "candidateFixed", "candidateV2Only")

YEAR = date.today().year  # vulnix fetches the feeds of the last six years
CRITICAL = f"CVE-{YEAR}-10001"  # openssl 1.1.1t exactly, CVSS 9.8
MEDIUM = f"CVE-{YEAR}-10002"  # openssl 1.1.1 up to 1.1.1u, CVSS 5.0
ZLIB = f"CVE-{YEAR}-10003"  # zlib 1.2.13, CVSS 9.1: the running system has it
V2_ONLY = f"CVE-{YEAR}-10004"  # libxml2 2.10.3, only a CVSS v2 score (7.5)
FEED = (
    FeedCve(CRITICAL, "openssl", version="1.1.1t", cvss_v3=9.8, cvss_v2=10.0),
    FeedCve(MEDIUM, "openssl", start_including="1.1.1", end_excluding="1.1.1u", cvss_v3=5.0),
    FeedCve(ZLIB, "zlib", version="1.2.13", cvss_v3=9.1),
    FeedCve(V2_ONLY, "libxml2", version="2.10.3", cvss_v2=7.5),
    FeedCve(f"CVE-{YEAR - 1}-20001", "bash", version="5.2", cvss_v3=9.8),
)


@pytest.fixture(scope="module")
def systems(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The fixture's fake systems, built with real Nix (out-links keep them from the GC)."""
    links = tmp_path_factory.mktemp("vulnerable")
    done = subprocess.run(
        [
            "nix",
            "build",
            "--json",
            "--out-link",
            str(links / "result"),
            "--file",
            str(FIXTURE),
            *SYSTEMS,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    paths = [entry["outputs"]["out"] for entry in json.loads(done.stdout)]
    hosts = {
        "current": "current",
        "candidate": "candidate",
        "currentWithOpenssl": "current-with-openssl",
        "candidateFixed": "candidate-fixed",
        "candidateV2Only": "candidate-v2-only",
    }
    return {
        attr: next(p for p in paths if p.endswith(f"-pullnix-vulnerable-system-{host}"))
        for attr, host in hosts.items()
    }


@pytest.fixture(scope="module")
def feed() -> Iterator[NvdFeed]:
    with NvdFeed.serving(FEED) as served:
        yield served


@pytest.fixture
def settings(feed: NvdFeed, tmp_path: Path) -> VulnixSettings:
    feed.fail_with = None
    return VulnixSettings(
        mirror=feed.mirror, cache_dir=tmp_path / "state" / "vulnix", program=VULNIX
    )


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    path = tmp_path / "checkout"
    path.mkdir()
    return path


def cves(max_new_severity: float = 7.0, whitelist: str | None = None) -> list[Gate]:
    return [Gate("cves", vulnix=VulnixGate(max_new_severity, whitelist))]


@pytest.mark.nix
def test_refuses_a_new_critical_cve_and_names_it(
    systems: dict[str, str], checkout: Path, settings: VulnixSettings
) -> None:
    with pytest.raises(GateRefused) as refused:
        run_gates(cves(7.0), systems["candidate"], systems["current"], checkout, vulnix=settings)
    message = str(refused.value)
    assert isinstance(refused.value, TerminalError)
    assert refused.value.reason == "GateRefused"
    assert f"  {CRITICAL}  openssl 1.1.1t  CVSS 9.8" in message
    assert "it brings 1 vulnerability at or above CVSS 7" in message
    assert MEDIUM not in message  # 5.0 is below the threshold
    assert ZLIB not in message  # the running system already has it
    assert f'["openssl-1.1.1t"]\n  cve = ["{CRITICAL}"]' in message


@pytest.mark.nix
def test_passes_when_the_threshold_is_above_every_new_score(
    systems: dict[str, str], checkout: Path, settings: VulnixSettings
) -> None:
    run_gates(cves(10.0), systems["candidate"], systems["current"], checkout, vulnix=settings)


@pytest.mark.nix
def test_a_lower_threshold_also_refuses_the_medium_one(
    systems: dict[str, str], checkout: Path, settings: VulnixSettings
) -> None:
    with pytest.raises(GateRefused, match=f"(?s){CRITICAL}.*CVSS 9.8.*{MEDIUM}.*CVSS 5"):
        run_gates(cves(5.0), systems["candidate"], systems["current"], checkout, vulnix=settings)


@pytest.mark.nix
def test_passes_when_the_cve_is_whitelisted(
    systems: dict[str, str], checkout: Path, settings: VulnixSettings
) -> None:
    (checkout / "policy").mkdir()
    (checkout / "policy" / "vulnix.toml").write_text(
        f'["openssl-1.1.1t"]\ncve = ["{CRITICAL}"]\ncomment = "no TLS server here"\n'
    )
    run_gates(
        cves(7.0, "policy/vulnix.toml"),
        systems["candidate"],
        systems["current"],
        checkout,
        vulnix=settings,
    )


@pytest.mark.nix
def test_a_whitelist_for_another_cve_or_expired_does_not_help(
    systems: dict[str, str], checkout: Path, settings: VulnixSettings
) -> None:
    (checkout / "vulnix-whitelist.toml").write_text(
        f'["openssl-1.1.1t"]\ncve = ["{MEDIUM}"]\n\n'
        f'["openssl"]\ncve = ["{CRITICAL}"]\nuntil = 2020-01-01\n'
    )
    with pytest.raises(
        GateRefused, match=f"(?s){CRITICAL}.*add it to vulnix-whitelist.toml"
    ) as refused:
        run_gates(
            cves(5.0, "vulnix-whitelist.toml"),
            systems["candidate"],
            systems["current"],
            checkout,
            vulnix=settings,
        )
    assert MEDIUM not in str(refused.value)


@pytest.mark.nix
def test_what_the_running_system_already_has_does_not_count(
    systems: dict[str, str], checkout: Path, settings: VulnixSettings, tmp_path: Path
) -> None:
    # the running system as the agent sees it: a symlink such as /run/current-system
    running = tmp_path / "current-system"
    running.symlink_to(systems["currentWithOpenssl"])
    run_gates(cves(0.0), systems["candidate"], str(running), checkout, vulnix=settings)


@pytest.mark.nix
def test_a_first_deploy_counts_everything(
    systems: dict[str, str], checkout: Path, settings: VulnixSettings
) -> None:
    with pytest.raises(GateRefused, match=f"(?s)brings 2 .*{CRITICAL}.*{ZLIB}"):
        run_gates(cves(7.0), systems["candidate"], None, checkout, vulnix=settings)


@pytest.mark.nix
def test_a_fixed_version_outside_the_vulnerable_range_passes(
    systems: dict[str, str], checkout: Path, settings: VulnixSettings
) -> None:
    run_gates(cves(0.0), systems["candidateFixed"], systems["current"], checkout, vulnix=settings)


@pytest.mark.nix
def test_a_cve_without_a_v3_score_counts_even_at_ten(
    systems: dict[str, str], checkout: Path, settings: VulnixSettings
) -> None:
    # vulnix 1.10's --json reports CVSS v3 scores only: a v2-only CVE has no score there
    with pytest.raises(GateRefused, match=f"{V2_ONLY}  libxml2 2.10.3  no CVSS score"):
        run_gates(
            cves(10.0), systems["candidateV2Only"], systems["current"], checkout, vulnix=settings
        )


@pytest.mark.nix
def test_the_feed_is_cached_in_the_state_dir(
    systems: dict[str, str], checkout: Path, settings: VulnixSettings, feed: NvdFeed
) -> None:
    before = len(feed.requests)
    run_gates(cves(10.0), systems["candidate"], systems["current"], checkout, vulnix=settings)
    downloads = feed.requests[before:]
    assert [path.rsplit("/", 1)[1] for path, _ in downloads] == [
        f"nvdcve-1.1-{year}.json.gz" for year in range(YEAR - 5, YEAR + 1)
    ]
    assert settings.cache_dir is not None
    assert (settings.cache_dir / "Data.fs").is_file()
    feed.fail_with = 500  # a fresh cache is used without asking the feed
    with pytest.raises(GateRefused, match=CRITICAL):
        run_gates(cves(7.0), systems["candidate"], systems["current"], checkout, vulnix=settings)
    assert len(feed.requests) == before + len(downloads)


@pytest.mark.nix
def test_an_unreachable_feed_is_transient_not_a_pass(
    systems: dict[str, str], checkout: Path, settings: VulnixSettings
) -> None:
    closed = VulnixSettings(
        mirror=f"http://127.0.0.1:{free_port()}/nvd/", cache_dir=settings.cache_dir, program=VULNIX
    )
    with pytest.raises(TransientError, match="could not fetch the NVD feed") as failed:
        run_gates(
            cves(10.0), systems["candidateFixed"], systems["current"], checkout, vulnix=closed
        )
    assert failed.value.reason == "VulnixFeedUnreachable"
    assert "Connection refused" in str(failed.value)


@pytest.mark.nix
def test_a_feed_answering_errors_is_transient(
    systems: dict[str, str], checkout: Path, settings: VulnixSettings, feed: NvdFeed
) -> None:
    feed.fail_with = 500
    with pytest.raises(TransientError, match="500 Server Error") as failed:
        run_gates(
            cves(10.0), systems["candidateFixed"], systems["current"], checkout, vulnix=settings
        )
    assert failed.value.reason == "VulnixFeedUnreachable"


@pytest.mark.nix
def test_a_feed_that_never_answers_times_out_as_transient(
    systems: dict[str, str], checkout: Path, settings: VulnixSettings
) -> None:
    with socket.socket() as silent:  # accepts connections (the kernel does), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        hanging = VulnixSettings(
            mirror=f"http://127.0.0.1:{port}/nvd/",
            cache_dir=settings.cache_dir,
            program=VULNIX,
            timeout=2.0,
        )
        with pytest.raises(TransientError, match="no answer about the new system") as failed:
            run_gates(cves(), systems["candidate"], systems["current"], checkout, vulnix=hanging)
    assert failed.value.reason == "VulnixTimeout"


@pytest.mark.nix
def test_a_running_system_vulnix_cannot_scan_is_not_a_pass(
    systems: dict[str, str], checkout: Path, settings: VulnixSettings
) -> None:
    gone = "/nix/store/00000000000000000000000000000000-pullnix-vanished-system"
    with pytest.raises(GateRefused, match="could not scan the running system") as failed:
        run_gates(cves(), systems["candidateFixed"], gone, checkout, vulnix=settings)
    assert failed.value.reason == "VulnixFailed"
    assert "does not exist" in str(failed.value)


@pytest.mark.nix
def test_the_running_system_itself_passes_without_asking_the_feed(
    systems: dict[str, str], checkout: Path
) -> None:
    nowhere = VulnixSettings(mirror=f"http://127.0.0.1:{free_port()}/", program=VULNIX)
    run_gates(cves(0.0), systems["candidate"], systems["candidate"], checkout, vulnix=nowhere)


def test_a_missing_vulnix_refuses(checkout: Path, tmp_path: Path) -> None:
    missing = VulnixSettings(program=str(tmp_path / "no-vulnix"), cache_dir=tmp_path / "c")
    with pytest.raises(GateRefused, match="not found; install vulnix") as refused:
        run_gates(cves(), "/nix/store/x-new", None, checkout, vulnix=missing)
    assert refused.value.reason == "VulnixMissing"


@pytest.mark.parametrize(
    ("relative", "content", "message"),
    [
        ("vulnix-whitelist.toml", None, "is not a file in this commit"),
        ("policy", None, "is not a file in this commit"),
        ("../outside.toml", "", "is outside the repository"),
        ("vulnix-whitelist.toml", '["openssl"]\ncves = ["CVE-2026-1"]\n', "unknown key 'cves'"),
        ("vulnix-whitelist.toml", "\udcff", "is not UTF-8 text"),
    ],
)
def test_a_bad_whitelist_refuses_before_any_scan(
    checkout: Path, tmp_path: Path, relative: str, content: str | None, message: str
) -> None:
    (checkout / "policy").mkdir()
    if content is not None:
        (checkout / relative).write_bytes(content.encode("utf-8", "surrogateescape"))
    never = VulnixSettings(program=str(tmp_path / "no-vulnix"))
    with pytest.raises(WhitelistInvalid, match=f"^gate 'cves': whitelist '.*'.*{message}"):
        run_gates(cves(7.0, relative), "/nix/store/x-new", None, checkout, vulnix=never)


def test_the_mirror_comes_from_the_environment(tmp_path: Path) -> None:
    url = "http://127.0.0.1:1/nvd/"
    assert VulnixSettings.from_environ({MIRROR_ENV: url}, cache_dir=tmp_path) == VulnixSettings(
        mirror=url, cache_dir=tmp_path
    )
    assert VulnixSettings.from_environ({MIRROR_ENV: ""}).mirror is None
    assert VulnixSettings.from_environ({}).mirror is None
