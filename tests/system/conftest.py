"""The system tier's fixtures: a cached Debian root, a probe boot, booted containers.

Every test here is marked `system`. The tier is skipped only when this machine
cannot run systemd-nspawn at all (not root, a tool missing, or a probe boot of
the cached root fails), and then loudly: the reason is on every skipped test and
in a `SYSTEM TIER SKIPPED` banner at the end of the run. A failure to build the
root (debootstrap, network) is an error, not a skip.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.system.container import Container, ContainerError, tools_missing
from tests.system.install import Installed, build_wheel, install_pullnix
from tests.system.rootfs import CachedRoot, ensure_root

SYSTEM_DIR = Path(__file__).resolve().parent
_skip_reason = pytest.StashKey[str]()
_timings = pytest.StashKey[list[str]]()


def _cannot_run() -> str | None:
    if os.geteuid() != 0:
        return "not root: systemd-nspawn, mount and debootstrap need root"
    missing = tools_missing()
    if missing:
        return (
            f"missing {', '.join(missing)}: install debootstrap and systemd-container "
            "(scripts/install.sh does)"
        )
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    ours = [item for item in items if SYSTEM_DIR in Path(str(item.path)).parents]
    reason = _cannot_run() if ours else None
    if reason:
        config.stash[_skip_reason] = reason
        for item in ours:
            item.add_marker(pytest.mark.skip(reason=f"SYSTEM TIER SKIPPED: {reason}"))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    config = terminalreporter.config
    for line in config.stash.get(_timings, []):
        terminalreporter.write_line(f"system tier: {line}")
    reason = config.stash.get(_skip_reason, None)
    if reason:
        terminalreporter.write_sep("!", "SYSTEM TIER SKIPPED", red=True, bold=True)
        terminalreporter.write_line(f"SYSTEM TIER SKIPPED: {reason}", red=True, bold=True)
        terminalreporter.write_line(
            "No test of the real-systemd tier ran on this machine.", red=True
        )


@pytest.fixture(scope="session")
def system_root(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> CachedRoot:
    """The cached Debian root, proven bootable by one probe boot per session."""
    config = request.config
    timings = config.stash.setdefault(_timings, [])
    root = ensure_root()
    timings.append(
        f"root {root.path.name}: "
        + (
            f"built in {root.built_seconds:.0f}s"
            if root.built_seconds is not None
            else "from the cache"
        )
    )
    probe = Container(root.path, tmp_path_factory.mktemp("probe"))
    try:
        probe.boot()
        probe.poweroff()
    except (ContainerError, OSError) as exc:
        reason = f"a probe boot of {root.path} failed: {exc}"
        config.stash[_skip_reason] = reason
        pytest.skip(f"SYSTEM TIER SKIPPED: {reason}")
    finally:
        probe.close()
    timings.append(f"probe boot {probe.boot_seconds[0]:.1f}s")
    return root


@pytest.fixture
def container(system_root: CachedRoot, tmp_path: Path) -> Iterator[Container]:
    """A freshly booted container over the cached root, stopped after the test."""
    with Container(system_root.path, tmp_path) as box:
        yield box


@pytest.fixture
def installed(container: Container, pullnix_wheel: Path) -> Installed:
    """pullnix in the container: the helper in its profile, the fleet repository's first
    commit built and switched to, its units (the helper, the git server, the agent) running."""
    return install_pullnix(container, pullnix_wheel)


@pytest.fixture(scope="session")
def pullnix_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """pullnix's wheel from this checkout, built once a session."""
    return build_wheel(tmp_path_factory.mktemp("wheel"))
