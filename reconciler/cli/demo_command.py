"""`pullnix demo`: the command; the story itself is `reconciler.demo.story`.

Must not: hold any of the demo's logic.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from reconciler.demo.progress import Progress
from reconciler.demo.story import run


@click.command()
@click.option(
    "--dir",
    "workdir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Build the sandbox here and keep it (default: a temporary directory).",
)
@click.option("--keep", is_flag=True, help="Keep the temporary sandbox (logs, status, repo).")
@click.option("--plain", is_flag=True, help="Plain lines even on a terminal.")
@click.option(
    "--jaeger-ui",
    metavar="URL",
    help="The Jaeger UI the trace links point at, e.g. http://jaeger.example.org:16686 "
    "(default: port 16686 on the host of OTEL_EXPORTER_OTLP_ENDPOINT).",
)
def demo(workdir: Path | None, keep: bool, plain: bool, jaeger_ui: str | None) -> None:
    """The whole story in a sandbox: a push converges, a broken push rolls back by itself.

    Needs Nix (Debian's nix-bin) and root, nothing else: no NixOS, no network. It
    builds a small fake NixOS system with real Nix and runs the real agent and helper.
    With OTEL_EXPORTER_OTLP_ENDPOINT set, it exports the traces and prints each
    deploy's link in the Jaeger UI.
    """
    progress = Progress(live=False if plain else None)
    sys.exit(run(workdir, keep, progress, jaeger_ui))


COMMANDS: list[Any] = [demo]
