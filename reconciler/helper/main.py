"""`pullnix-helper [--config FILE]`: start the helper (the root switcher).

Owns the process: reading the machine config (`--config`, else
`PULLNIX_CONFIG`, else /etc/pullnix/agent.toml), logging to stderr (journald
keeps it), binding the socket, resuming a journaled operation, SIGTERM, and
re-executing itself from `[helper] profile` after a self-upgrade.

Must not: hold any policy; it wires `server`, `operator` and `journal`.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path
from types import FrameType

from reconciler.helper.config import DEFAULT_PATH, ConfigError, load_machine_config
from reconciler.helper.journal import Journal, JournalError
from reconciler.helper.operator import Operator
from reconciler.helper.server import Server, SocketInUse, bind

VERSION = "0.1.0"
log = logging.getLogger("pullnix.helper")


def main(argv: list[str] | None = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    if args.version:
        print(f"pullnix-helper {VERSION}")
        return 0
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="pullnix-helper[%(process)d] %(levelname)s %(message)s")
    config_path = Path(args.config or os.environ.get("PULLNIX_CONFIG") or DEFAULT_PATH)
    try:
        config = load_machine_config(config_path)
    except ConfigError as exc:
        print(f"pullnix-helper: {exc}", file=sys.stderr)
        return 2
    state_dir = config.helper.state_dir
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    journal = Journal(state_dir)
    profile_bin = config.helper.profile / "bin" / "pullnix-helper"

    def reexec() -> None:
        args = sys.argv[1:] if argv is None else argv
        os.execv(profile_bin, [str(profile_bin), *args])  # noqa: S606 - argv, no shell

    operator = Operator(config, journal, reexec)
    try:
        listener = bind(config.helper.socket)
    except (SocketInUse, OSError) as exc:
        print(f"pullnix-helper: cannot listen on {config.helper.socket}: {exc}",
              file=sys.stderr)
        return 1
    server = Server(listener, operator, config.helper.agent_uids, VERSION)

    def stop(signum: int, frame: FrameType | None) -> None:
        # The journal is always consistent, so stopping mid-operation is a crash the
        # next start recovers from; nothing to wait for.
        log.info("signal %d: stopping", signum)
        listener.close()
        config.helper.socket.unlink(missing_ok=True)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        operator.resume()
    except JournalError as exc:
        log.error("%s; move it aside after checking the system by hand", exc)
        return 1
    log.info("listening on %s (pid %d)", config.helper.socket, os.getpid())
    server.serve_forever()
    return 0


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="pullnix-helper",
                                     description="pullnix's root helper: activates, "
                                     "verifies, commits or rolls back system generations")
    parser.add_argument("--config", help="machine config (default: $PULLNIX_CONFIG or "
                        f"{DEFAULT_PATH})")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main())
