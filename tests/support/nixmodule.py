"""Evaluating nix/ with real Nix and no nixpkgs: the module's pure parts as values.

Owns `nix_eval` (an expression over JSON arguments, evaluated strictly), the
module's option defaults (`option_values`), the agent.toml it renders
(`render`) and the units it defines (`units`), with placeholder store paths for
the packages. Used by tests/integration/test_nixos_module.py and
test_nixos_units.py.
"""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
NIX = ROOT / "nix"

AGENT_A = "/nix/store/00000000000000000000000000000000-pullnix-0.1.0"
AGENT_B = "/nix/store/11111111111111111111111111111111-pullnix-0.2.0"
HELPER_A = "/nix/store/22222222222222222222222222222222-pullnix-helper-0.1.0"
HELPER_B = "/nix/store/33333333333333333333333333333333-pullnix-helper-0.2.0"
NIX_PKG = "/nix/store/44444444444444444444444444444444-nix-2.24.0"
CONFIG_A = "/nix/store/55555555555555555555555555555555-pullnix-agent.toml"
CONFIG_B = "/nix/store/66666666666666666666666666666666-pullnix-agent.toml"


def nix_eval(expr: str, **args: Any) -> Any:
    """Evaluate `expr` (a function of the JSON-encoded `args`) strictly with real Nix."""
    argv = [
        "nix-instantiate",
        "--eval",
        "--strict",
        "--json",
        "-E",
        f"{{ args }}: let a = builtins.fromJSON args; in {expr}",
        "--argstr",
        "args",
        json.dumps(args),
    ]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise NixEvalError(done.stderr)
    return json.loads(done.stdout)


class NixEvalError(Exception):
    pass


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def option_values(**over: Any) -> dict[str, Any]:
    """`services.pullnix` as the module hands it over: the defaults, then `over`."""
    defaults = nix_eval("import ./nix/defaults.nix")
    return deep_merge(defaults, over)


def render(options: dict[str, Any]) -> str:
    text = nix_eval("import ./nix/render-config.nix a", **options)
    assert isinstance(text, str)
    return text


def units(
    agent: str = AGENT_A,
    helper: str = HELPER_A,
    config: str = CONFIG_A,
    state_dir: str = "/var/lib/pullnix",
    **extra: Any,
) -> dict[str, Any]:
    result = nix_eval(
        "import ./nix/units.nix (a // { agentPath = [ a.nixPackage ]; })",
        agentPackage=agent,
        helperPackage=helper,
        nixPackage=NIX_PKG,
        configFile=config,
        stateDir=state_dir,
        **extra,
    )
    assert isinstance(result, dict)
    return result


def failed_assertions(options: dict[str, Any], host_name: str) -> list[str]:
    """The messages of the module's assertions (nix/wiring.nix) that fail for `options`
    on a machine whose networking.hostName is `host_name`; [] when the build may go on."""
    messages = nix_eval(
        "map (x: x.message) (builtins.filter (x: !x.assertion) "
        "((import ./nix/wiring.nix).assertions a.options a.hostName))",
        options=options,
        hostName=host_name,
    )
    assert isinstance(messages, list)
    return [str(m) for m in messages]
