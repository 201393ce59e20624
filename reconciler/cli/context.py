"""What every `pullnix` command gets from its group: the config path, the machine config lazily.

Must not: read the machine config before a command asks for it (validate and
schema never do).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import click

from reconciler.common.config import DEFAULT_PATH, MachineConfig, load_machine_config


@dataclass
class CliContext:
    """What the group hands its commands (`ctx.obj`); the machine config is read lazily."""

    config_path: Path = DEFAULT_PATH
    _machine_config: MachineConfig | None = field(default=None, repr=False)

    def machine_config(self) -> MachineConfig:
        """The machine config, read on first use; raise ConfigError saying what is wrong."""
        if self._machine_config is None:
            self._machine_config = load_machine_config(self.config_path)
        return self._machine_config


pass_context = click.make_pass_decorator(CliContext, ensure=True)
