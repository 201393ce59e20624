"""Keeping the helper at the version the running generation carries.

Owns the agent's side of the helper's self-upgrade. Every generation links the
helper it carries next to the machine config (`helper` beside `agent.toml`:
/etc/pullnix/helper under the NixOS module, so `--config` or PULLNIX_CONFIG
moves both together). Between passes the agent compares that link's store
path with the target of `[helper] profile`; when they differ and the helper
has no operation in progress, it sends `upgrade {storePath}` once. The helper
then moves its profile and re-executes itself when idle.

Must not: touch the helper's profile itself, ask while an operation runs, or
ask twice for the same store path (a refused or failed upgrade is the helper's
to report, not the agent's to hammer; a restarted agent asks once more).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from reconciler.common.client import HelperClient, HelperError, HelperUnavailable
from reconciler.common.config import MachineConfig

log = logging.getLogger("pullnix.agent")

#: The link to the wanted helper, beside the machine config.
WANTED_LINK_NAME = "helper"


def wanted_helper_link(config_path: Path) -> Path:
    """Where a generation links the helper it carries, for the machine config at `config_path`."""
    return config_path.parent / WANTED_LINK_NAME


def store_path_of(link: Path) -> str | None:
    """The store path `link` resolves to, or None when it (or its target) does not exist."""
    try:
        os.stat(link)
    except OSError:
        return None
    return os.path.realpath(link)


def needs_asking(wanted: str | None, current: str | None, asked: frozenset[str]) -> bool:
    """Is `wanted` a helper the profile does not run yet, and not asked for before?"""
    return wanted is not None and wanted != current and wanted not in asked


class HelperUpgrade:
    """Remembers which store paths the helper was asked to upgrade to (for this process)."""

    def __init__(self, wanted_link: Path | None) -> None:
        self.wanted_link = wanted_link
        self.asked: set[str] = set()

    def check(self, machine: MachineConfig) -> str | None:
        """One look, between passes; the store path the helper was asked for, else None."""
        if self.wanted_link is None:
            return None
        wanted = store_path_of(self.wanted_link)
        current = store_path_of(machine.helper.profile)
        if not needs_asking(wanted, current, frozenset(self.asked)):
            return None
        assert wanted is not None
        client = HelperClient(machine.helper.socket, timeout=5)
        try:
            status = client.helper_status()
        except (HelperUnavailable, HelperError, KeyError, TypeError, ValueError) as exc:
            log.debug("helper upgrade to %s deferred: %s", wanted, exc)
            return None
        if status.busy:
            log.debug("helper upgrade to %s deferred: an operation is in progress", wanted)
            return None
        # Remembered before sending: an answer lost on the way still counts as asked.
        self.asked.add(wanted)
        log.info(
            "asking the helper to upgrade itself: %s wants %s, its profile runs %s",
            self.wanted_link,
            wanted,
            current or "nothing",
        )
        try:
            answer = client.upgrade(wanted)
        except HelperError as exc:
            log.error("the helper refused to upgrade to %s: %s", wanted, exc)
            return wanted
        except (HelperUnavailable, ValueError) as exc:
            log.warning("helper upgrade to %s: no answer (%s); not asking again", wanted, exc)
            return wanted
        log.info(
            "helper upgrade to %s %s", wanted, "queued" if answer.get("queued") else "under way"
        )
        return wanted
