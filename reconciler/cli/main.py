"""The `pullnix` command: the click group, its global options, and the list of commands.

Owns what every command shares: `--config FILE` (or PULLNIX_CONFIG), kept in
the click context as a CliContext (context.py) whose machine config is read only when a
command asks for it (validate and schema never do). Each command group lives
in a module of its own next to this one and is registered below, so adding a
command is one module and one line here.

Must not: hold a command's logic; commands call into the layers below.
"""

from __future__ import annotations

from pathlib import Path

import click

from reconciler import __version__
from reconciler.cli import agent_commands, demo_command, fleet_commands, publish, spec_commands
from reconciler.cli.context import CliContext
from reconciler.common.config import DEFAULT_PATH


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_PATH,
    show_default=True,
    envvar="PULLNIX_CONFIG",
    help="The machine config (agent.toml); also PULLNIX_CONFIG.",
)
@click.version_option(__version__, prog_name="pullnix")
@click.pass_context
def cli(ctx: click.Context, config_path: Path) -> None:
    """pullnix: a pull-based GitOps reconciler for NixOS."""
    ctx.obj = CliContext(config_path=config_path)


for command in [
    *spec_commands.COMMANDS,
    *agent_commands.COMMANDS,
    *publish.COMMANDS,
    *fleet_commands.COMMANDS,
    *demo_command.COMMANDS,
]:
    cli.add_command(command)


def main() -> None:
    """Entry point of the `pullnix` script."""
    cli(prog_name="pullnix")
