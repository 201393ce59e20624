"""`pullnix-helper [--config FILE]`: start the helper (the root switcher).

Owns the process: reading the machine config (`--config`, else
`PULLNIX_CONFIG`, else /etc/pullnix/agent.toml), logging to stderr (journald
keeps it), its state dir (owned by it, mode 0750, setgid kept when given:
the directory's group, the agent's under the NixOS module, may read the
journal and the records of committed generations, never write them), binding
the socket, resuming a journaled operation, watching the config for changes (`reload`),
SIGTERM (through a wake-up fd, see `stop_signals`), and re-executing itself
from `[helper] profile` after a self-upgrade.

Must not: hold any policy; it wires `server`, `operator` and `journal`.
"""

from __future__ import annotations

import os
import signal
import stat
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from reconciler.common.config import DEFAULT_PATH, ConfigError, MachineConfig, load_machine_config
from reconciler.common.sockets import SocketInUse, bind
from reconciler.helper.log import log
from reconciler.helper.reload import ConfigReloader, fingerprint
from reconciler.helper.server import Server

VERSION = "0.1.0"
#: The state dir: ours to write; its group (set by whoever made it, e.g. tmpfiles) reads.
#: A setgid bit given to it is kept, so the files in it get that group too.
STATE_DIR_MODE = 0o750


def main(argv: list[str] | None = None) -> int:  # noqa: PLR0915 - the start, step by step
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
    except UsageError as exc:
        if not str(exc):
            print(USAGE)
            return 0
        print(f"{exc}\n{USAGE}", file=sys.stderr)
        return 2
    if args.version:
        print(f"pullnix-helper {VERSION}")
        return 0
    config_path = Path(args.config or os.environ.get("PULLNIX_CONFIG") or DEFAULT_PATH)
    seen = fingerprint(config_path)
    try:
        config = load_machine_config(config_path)
    except ConfigError as exc:
        print(f"pullnix-helper: {exc}", file=sys.stderr)
        return 2
    state_dir = config.helper.state_dir
    try:
        prepare_state_dir(state_dir)
    except (StateDirError, OSError) as exc:
        print(f"pullnix-helper: {exc}", file=sys.stderr)
        return 2
    try:
        listener = bind(config.helper.socket)
    except (SocketInUse, OSError) as exc:
        print(f"pullnix-helper: cannot listen on {config.helper.socket}: {exc}", file=sys.stderr)
        return 1
    server = Server(listener, config.helper.agent_uids, VERSION)
    wake = stop_signals()
    threading.Thread(target=server.serve_forever, name="accept", daemon=True).start()
    log.info("listening on %s (pid %d)", config.helper.socket, os.getpid())

    # The operation machinery loads once the socket answers ping; requests that need
    # it wait for `attach` (milliseconds), so a restarted helper is reachable sooner.
    from reconciler.helper.journal import Journal, JournalError
    from reconciler.helper.operator import Operator

    def reexec() -> None:
        profile_bin = operator.config.helper.profile / "bin" / "pullnix-helper"
        args = sys.argv[1:] if argv is None else argv
        os.execv(profile_bin, [str(profile_bin), *args])  # noqa: S606 - argv, no shell

    operator = Operator(config, Journal(state_dir), reexec)

    def take(new: MachineConfig) -> None:
        server.admit(new.helper.agent_uids)
        operator.config = new  # each step reads it afresh

    reloader = ConfigReloader(config_path, config, seen, take)
    server.config_report = reloader.report
    try:
        operator.resume()
    except JournalError as exc:
        log.error("%s; move it aside after checking the system by hand", exc)
        listener.close()
        config.helper.socket.unlink(missing_ok=True)
        return 1
    server.attach(operator)
    threading.Thread(
        target=reloader.run, args=(threading.Event(),), name="config", daemon=True
    ).start()
    signum = wait_for_stop(wake)
    # The journal is always consistent, so stopping mid-operation is a crash the next
    # start recovers from; nothing to wait for.
    log.info("signal %d: stopping", signum)
    listener.close()
    config.helper.socket.unlink(missing_ok=True)
    return 0


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def stop_signals() -> int:
    """Route SIGTERM and SIGINT to a pipe; its read end, for `wait_for_stop`.

    The kernel hands a process's signal to whichever thread can take it, often a
    connection thread busy answering a request, and then Python's handler runs only
    when the main thread next runs Python code: a main thread blocked in a lock or an
    `Event.wait` would sleep on through it. The wake-up fd is written by the C-level
    handler in whatever thread the signal lands, so the main thread's `read` returns.
    """
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    for signum in STOP_SIGNALS:
        signal.signal(signum, _ignore)  # a Python handler, so the C one writes the fd
    return read_end


def _ignore(signum: int, frame: FrameType | None) -> None:
    """Nothing: the main thread acts on the wake-up fd, outside any handler."""


def wait_for_stop(read_end: int) -> int:
    """Block until a stop signal arrives (or arrived since `stop_signals`); its number."""
    while True:
        for signum in os.read(read_end, 64):
            if signum in STOP_SIGNALS:
                return signum


class StateDirError(Exception):
    """The state dir is not one the helper can trust."""


def prepare_state_dir(path: Path) -> None:
    """Make `path` (if need be) and hold it to mode 0750 (plus setgid if it has it),
    refusing one that is not a directory owned by this process's user: whoever could write
    there could forge the journal the helper acts on after a restart."""
    path.mkdir(parents=True, exist_ok=True, mode=STATE_DIR_MODE)
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode):
        raise StateDirError(
            f"{path}: the state dir is not a directory (a symlink?); "
            "make it a directory owned by the helper's user"
        )
    if info.st_uid != os.geteuid():
        raise StateDirError(
            f"{path}: the state dir belongs to uid {info.st_uid}, not to "
            f"the helper (uid {os.geteuid()}); chown it to the helper's user"
        )
    wanted = STATE_DIR_MODE | (info.st_mode & stat.S_ISGID)
    if stat.S_IMODE(info.st_mode) != wanted:
        os.chmod(path, wanted)


USAGE = f"""usage: pullnix-helper [--config FILE] [--version]

pullnix's root helper: activates, verifies, commits or rolls back system generations.

  --config FILE  the machine config (default: $PULLNIX_CONFIG or {DEFAULT_PATH})
  --version      print the version and exit
"""


@dataclass(frozen=True)
class Args:
    config: str | None = None
    version: bool = False


class UsageError(Exception):
    pass


def parse_args(argv: list[str]) -> Args:
    """The two options, without argparse (which costs the helper's start time)."""
    config, version, rest = None, False, list(argv)
    while rest:
        arg = rest.pop(0)
        if arg == "--version":
            version = True
        elif arg == "--config" and rest:
            config = rest.pop(0)
        elif arg.startswith("--config="):
            config = arg.removeprefix("--config=")
        elif arg in ("-h", "--help"):
            raise UsageError("")
        else:
            raise UsageError(f"pullnix-helper: unexpected argument {arg!r}")
    return Args(config, version)


if __name__ == "__main__":
    sys.exit(main())
