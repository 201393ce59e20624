"""The `pullnix` command: the click group, its global options, and the list of commands.

Owns what every command shares: `--config FILE` (or PULLNIX_CONFIG), kept in
the click context as a CliContext whose machine config is read only when a
command asks for it (validate and schema never do). Each command group lives
in a module of its own next to this one and is registered below, so adding a
command is one module and one line here.

Must not: hold a command's logic; commands call into the layers below.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import click

from reconciler import __version__
from reconciler.cli import spec_commands
from reconciler.helper.config import DEFAULT_PATH, MachineConfig, load_machine_config


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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              default=DEFAULT_PATH, show_default=True, envvar="PULLNIX_CONFIG",
              help="The machine config (agent.toml); also PULLNIX_CONFIG.")
@click.version_option(__version__, prog_name="pullnix")
@click.pass_context
def cli(ctx: click.Context, config_path: Path) -> None:
    """pullnix: a pull-based GitOps reconciler for NixOS."""
    ctx.obj = CliContext(config_path=config_path)


for command in spec_commands.COMMANDS:
    cli.add_command(command)


def main() -> None:
    """Entry point of the `pullnix` script."""
    cli(prog_name="pullnix")
