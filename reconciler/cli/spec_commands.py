"""`pullnix validate` and `pullnix schema`: the desired state, checked without a machine.

Owns the output of a config repository's CI: one line per problem,
`FILE:LINE:COL: spec.path: message`, exit 0 when every file is valid and 1
otherwise; `--json` prints the same as a list. Neither command reads the
machine config.

Must not: decide what is valid (that is `reconciler.api`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from reconciler.api import Issue, SpecError, for_host, load_spec_file, schema_json


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable list.")
@click.option(
    "--host",
    "host",
    metavar="NAME",
    help="Also check the spec as host NAME sees it (its hosts overrides merged).",
)
def validate(files: tuple[Path, ...], as_json: bool, host: str | None) -> None:
    """Check desired-state files (pullnix.yaml); exit 0 if all are valid, 1 if not."""
    results = [_check(path, host) for path in files]
    if as_json:
        click.echo(json.dumps(results, indent=2))
    else:
        for result in results:
            if result["valid"]:
                click.echo(f"{result['file']}: valid")
            for issue in result["issues"]:
                click.echo(str(Issue(**issue)))
        bad = sum(not r["valid"] for r in results)
        if bad:
            problems = sum(len(r["issues"]) for r in results)
            click.echo(
                f"{problems} problem{'s' * (problems != 1)} in {bad} file{'s' * (bad != 1)}",
                err=True,
            )
    sys.exit(0 if all(r["valid"] for r in results) else 1)


def _check(path: Path, host: str | None) -> dict[str, Any]:
    try:
        deployment = load_spec_file(path)
        if host is not None:
            for_host(deployment, host)
    except SpecError as exc:
        return {"file": str(path), "valid": False, "issues": [i.to_dict() for i in exc.issues]}
    return {"file": str(path), "valid": True, "issues": []}


@click.command()
def schema() -> None:
    """Print the JSON Schema of pullnix.yaml (for editors and CI)."""
    click.echo(json.dumps(schema_json(), indent=2))


COMMANDS = [validate, schema]
