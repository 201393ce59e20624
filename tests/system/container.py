"""A booted Debian with real systemd as PID 1, in systemd-nspawn, for the system tier.

Owns one container's life: an overlay over the cached root (`rootfs.py`) whose
upper layer lives in the test's own directory, so the cache is never dirtied and
a reboot after a power cut finds the same disk; the `systemd-nspawn --boot`
process and its log; waiting for `systemctl is-system-running`; commands inside
(`nsenter` into the container's init, argv lists, a clean environment); files
in through a shared directory; a clean poweroff, and a power cut.

    with Container(cached_root, tmp_path) as box:
        box.run(["systemctl", "is-active", "dbus.service"])
        box.power_cut()
        box.boot()   # the same disk, as after pulling the plug

Must not: touch the host's systemd, /nix or /etc; every path it writes is under
`workdir` (and a mount it removes when done).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import IO

from tests.system.rootfs import mounts_under

GUEST_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
    "TERM": "dumb",
    "SYSTEMD_PAGER": "",
    "SYSTEMD_COLORS": "0",
}
SHARED_IN_GUEST = "/pullnix-test"  # the workdir's `shared/`, bound read-write
BOOT_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


class ContainerError(Exception):
    """The container did not boot, stop or run as asked; the message has the boot log's tail."""


class Container:
    """One systemd-nspawn container over `root`; a context manager that boots and stops it.

    `disk` is "overlay" (instant; needs overlayfs over the cache and the workdir),
    "copy" (`cp -a`, a few seconds), or "auto": overlay, else copy. With
    `private_network` (the default) it has a network namespace of its own, holding
    only its loopback: what listens there never meets the host's ports (`hostlink.py`
    adds a veth link to the host when a test wants one)."""

    def __init__(
        self,
        root: Path,
        workdir: Path,
        *,
        bind_ro: dict[Path, str] | None = None,
        name: str | None = None,
        disk: str = "auto",
        private_network: bool = True,
    ) -> None:
        self.lower = root
        self.workdir = workdir
        self.shared = workdir / "shared"
        self.bind_ro = dict(bind_ro or {})
        # nspawn keeps per-machine state under /run/systemd/nspawn/propagate/<name>:
        # containers running at the same time need different names.
        self.name = name or f"pullnix-{uuid.uuid4().hex[:8]}"
        self.root = workdir / "root"
        self.disk = disk  # "auto" until the first boot decides: "overlay" or "copy"
        self.private_network = private_network  # its own loopback: ports never meet the host's
        self.boots = 0
        self.boot_seconds: list[float] = []
        self._nspawn: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._leader: int | None = None
        self._mounted = False
        self._copied = False

    # -- life ---------------------------------------------------------------------------

    def __enter__(self) -> Container:
        self.boot()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def boot(self, timeout: float = BOOT_TIMEOUT) -> None:
        """Start systemd on the disk (first boot, or again after `power_cut`) and wait for it."""
        if self.running:
            raise ContainerError(f"{self.name} is already running")
        self._mount()
        self.shared.mkdir(parents=True, exist_ok=True)
        self.boots += 1
        argv = [
            "systemd-nspawn",
            "--directory",
            str(self.root),
            "--boot",
            "--register=no",
            "--keep-unit",
            f"--machine={self.name}",
            "--console=read-only",
            f"--bind={self.shared}:{SHARED_IN_GUEST}",
        ]
        argv += [f"--bind-ro={host}:{guest}" for host, guest in self.bind_ro.items()]
        if self.private_network:
            argv.append("--private-network")
        self._log = self.boot_log.open("ab")
        self._log.write(f"==== boot {self.boots}: {' '.join(argv)}\n".encode())
        self._log.flush()
        started = time.monotonic()
        self._nspawn = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=dict(GUEST_ENV),
            start_new_session=True,
        )
        try:
            self._leader = self._find_leader(started + timeout)
            self._wait_running(started + timeout)
        except BaseException:
            self._kill()
            raise
        self.boot_seconds.append(time.monotonic() - started)

    def poweroff(self, timeout: float = STOP_TIMEOUT) -> None:
        """`systemctl poweroff` inside and wait; kill the container if it does not stop."""
        if not self.running:
            return
        assert self._nspawn is not None
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.run(["systemctl", "poweroff"], check=False, timeout=10)
        try:
            self._nspawn.wait(timeout)
        except subprocess.TimeoutExpired:
            self._kill()
            raise ContainerError(
                f"{self.name} did not power off within {timeout:.0f}s; "
                f"killed it.\n{self.log_tail()}"
            ) from None
        self._forget()

    def wait_reboot(self, timeout: float = 120.0) -> None:
        """Wait for the container to reboot itself, and boot it again: nspawn exits 133 on
        a reboot inside, and systemd-nspawn@.service restarts it for that status."""
        assert self._nspawn is not None
        try:
            code = self._nspawn.wait(timeout)
        except subprocess.TimeoutExpired:
            raise ContainerError(
                f"{self.name} did not reboot within {timeout:.0f}s\n{self.log_tail()}"
            ) from None
        self._forget()
        if code != 133:
            raise ContainerError(f"systemd-nspawn exited {code}, not 133 (reboot)")
        self.boot()

    def power_cut(self) -> None:
        """Pull the plug: SIGKILL the nspawn process and every process in the container.

        Killing the container's init kills its whole PID namespace at once, so no
        unit gets to stop and nothing inside runs another instruction. The disk keeps
        what was written (the host's page cache holds it: unsynced data is not lost
        the way real power loss could lose it)."""
        if not self.running:
            raise ContainerError(f"{self.name} is not running")
        self._kill()

    def close(self) -> None:
        """Stop the container if it runs (cleanly, else by force) and unmount its disk."""
        try:
            if self.running:
                self.poweroff()
        finally:
            self._kill()
            self._unmount()

    @property
    def running(self) -> bool:
        return self._nspawn is not None and self._nspawn.poll() is None

    @property
    def leader(self) -> int:
        """The host PID of the container's init (systemd)."""
        if self._leader is None or not self.running:
            raise ContainerError(f"{self.name} is not running")
        return self._leader

    @property
    def boot_log(self) -> Path:
        return self.workdir / "nspawn.log"

    # -- inside -------------------------------------------------------------------------

    def run(
        self,
        argv: list[str],
        *,
        check: bool = True,
        timeout: float = 60.0,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run `argv` in the container's namespaces as root, with a clean environment."""
        command = ["nsenter", f"--target={self.leader}", "--all", "--", *argv]
        result = subprocess.run(
            command,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=dict(GUEST_ENV),
            check=False,
        )
        if check and result.returncode != 0:
            raise ContainerError(
                f"in {self.name}: {argv} exited {result.returncode}\n"
                f"stdout: {result.stdout}\nstderr: {result.stderr}"
            )
        return result

    def copy_in(self, source: Path, dest: str, mode: int = 0o644) -> None:
        """Install the host file `source` at `dest` in the container (parents created)."""
        self.write_bytes(dest, source.read_bytes(), mode)

    def write_text(self, dest: str, text: str, mode: int = 0o644) -> None:
        self.write_bytes(dest, text.encode(), mode)

    def write_bytes(self, dest: str, data: bytes, mode: int = 0o644) -> None:
        transfer = self.shared / ".transfer"
        transfer.mkdir(exist_ok=True)
        staged = transfer / uuid.uuid4().hex
        staged.write_bytes(data)
        try:
            self.run(
                [
                    "install",
                    "-D",
                    "-m",
                    f"{mode:o}",
                    f"{SHARED_IN_GUEST}/.transfer/{staged.name}",
                    dest,
                ]
            )
        finally:
            staged.unlink()

    def read_text(self, path: str) -> str:
        return self.run(["cat", "--", path]).stdout

    def host_path(self, guest_path: str) -> Path:
        """A path inside the running container, as the host reaches it (through its init's
        root), e.g. to connect to a Unix socket the container listens on."""
        return Path(f"/proc/{self.leader}/root") / guest_path.lstrip("/")

    def guest_path(self, host_path: Path) -> str:
        """Where a file under the workdir's `shared/` appears inside the container."""
        return f"{SHARED_IN_GUEST}/{host_path.relative_to(self.shared)}"

    def unit_property(self, unit: str, prop: str) -> str:
        return self.run(["systemctl", "show", "--value", f"--property={prop}", unit]).stdout.strip()

    def main_pid(self, unit: str) -> int:
        return int(self.unit_property(unit, "MainPID"))

    def wait_active(self, unit: str, timeout: float = 30.0) -> int:
        """Wait until `unit` is active with a main process; its PID (inside the container)."""
        deadline = time.monotonic() + timeout
        state = pid = ""
        while time.monotonic() < deadline:
            state = self.unit_property(unit, "ActiveState")
            pid = self.unit_property(unit, "MainPID")
            if state == "active" and pid not in ("", "0"):
                return int(pid)
            time.sleep(0.1)
        status = self.run(["systemctl", "status", "--no-pager", "--lines=30", unit], check=False)
        raise ContainerError(
            f"{unit} not active after {timeout:.0f}s (state {state!r}, "
            f"pid {pid!r}):\n{status.stdout}{status.stderr}"
        )

    def journal(self, unit: str, boot: int = 0, pid: int | None = None) -> str:
        """A unit's journal in one boot (0 this one, -1 the one before), message text only;
        with `pid`, only what that process logged."""
        argv = ["journalctl", "--no-pager", "--output=cat", f"--boot={boot}"]
        if pid is None:
            argv.append(f"--unit={unit}")
        else:
            argv += [f"_SYSTEMD_UNIT={unit}", f"_PID={pid}"]
        return self.run(argv).stdout

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.boot_log.read_text(errors="replace")
        except OSError as exc:
            return f"(no boot log: {exc})"
        tail = "\n".join(text.splitlines()[-lines:])
        return f"-- last {lines} lines of {self.boot_log} --\n{tail}"

    # -- machinery ----------------------------------------------------------------------

    def _mount(self) -> None:
        """The disk: an overlay over the cached root with this container's upper layer,
        or, where overlayfs will not mount (an overlayfs /tmp, say), a copy of the root."""
        if self._mounted or self._copied:
            return
        upper, work = self.workdir / "upper", self.workdir / "overlay-work"
        for path in (upper, work, self.root):
            path.mkdir(parents=True, exist_ok=True)
        if self.disk in ("auto", "overlay"):
            mounted = subprocess.run(
                [
                    "mount",
                    "-t",
                    "overlay",
                    "overlay",
                    "-o",
                    f"lowerdir={self.lower},upperdir={upper},workdir={work}",
                    str(self.root),
                ],
                check=False,
                capture_output=True,
                text=True,
            )
            if mounted.returncode == 0:
                self.disk, self._mounted = "overlay", True
                return
            if self.disk == "overlay":
                raise ContainerError(
                    f"cannot mount the overlay for {self.name}: {mounted.stderr.strip()}"
                )
        subprocess.run(
            ["cp", "-a", "--reflink=auto", f"{self.lower}/.", str(self.root)],
            check=True,
            capture_output=True,
            text=True,
        )
        self.disk, self._copied = "copy", True

    def _unmount(self) -> None:
        if self._mounted:
            for point in mounts_under(self.root):
                subprocess.run(["umount", str(point)], check=False, capture_output=True)
            self._mounted = False

    def _find_leader(self, deadline: float) -> int:
        """The nspawn child that runs in a new PID namespace: the container's init."""
        assert self._nspawn is not None
        while time.monotonic() < deadline:
            if self._nspawn.poll() is not None:
                raise ContainerError(
                    f"systemd-nspawn exited {self._nspawn.returncode} "
                    f"while booting {self.name}\n{self.log_tail()}"
                )
            for child in _children(self._nspawn.pid):
                if _in_other_pid_namespace(child):
                    return child
            time.sleep(0.02)
        raise ContainerError(
            f"no container init under nspawn pid {self._nspawn.pid}\n{self.log_tail()}"
        )

    def _wait_running(self, deadline: float) -> None:
        assert self._nspawn is not None
        state = "(no answer)"
        while time.monotonic() < deadline:
            if self._nspawn.poll() is not None:
                raise ContainerError(
                    f"systemd-nspawn exited {self._nspawn.returncode} "
                    f"while booting {self.name}\n{self.log_tail()}"
                )
            try:
                result = self.run(["systemctl", "is-system-running"], check=False, timeout=10)
            except subprocess.TimeoutExpired:
                continue
            state = result.stdout.strip() or result.stderr.strip()
            if state in ("running", "degraded"):
                return
            if state in ("maintenance", "stopping"):
                break
            time.sleep(0.1)
        raise ContainerError(
            f"{self.name}: systemd not up (is-system-running: {state})\n{self.log_tail()}"
        )

    def _kill(self) -> None:
        """SIGKILL the container's init, which takes its whole PID namespace along at once,
        then nspawn, before it can tidy anything up."""
        if self._leader is not None and _in_other_pid_namespace(self._leader):
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._leader, signal.SIGKILL)
        if self._nspawn is not None and self._nspawn.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._nspawn.pid, signal.SIGKILL)
        if self._leader is not None:
            _wait_gone(self._leader, 10.0)
        if self._nspawn is not None:
            self._nspawn.wait(10)
        self._forget()

    def _forget(self) -> None:
        if self._log is not None:
            self._log.close()
        self._nspawn = self._log = self._leader = None


def _children(pid: int) -> list[int]:
    found = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/children") as f:
                found += [int(p) for p in f.read().split()]
    return found


def _in_other_pid_namespace(pid: int) -> bool:
    """Whether `pid` is alive in a PID namespace other than ours (a container's, then)."""
    try:
        return os.readlink(f"/proc/{pid}/ns/pid") != os.readlink("/proc/self/ns/pid")
    except OSError:
        return False


def _wait_gone(pid: int, timeout: float) -> None:
    """Wait until `pid` (not our child: init reaps it) has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                if stat.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                    return
        except OSError:
            return
        time.sleep(0.02)


def tools_missing() -> list[str]:
    """The host tools the tier needs that are not installed."""
    return [
        tool
        for tool in ("systemd-nspawn", "debootstrap", "nsenter", "mount")
        if shutil.which(tool, path=GUEST_ENV["PATH"]) is None
    ]
