"""pullnix: a pull-based GitOps reconciler for NixOS.

Layers, top to bottom (enforced by the import-linter contracts in pyproject.toml):

    cli         the command line
    demo        `pullnix demo`, and the fake NixOS system it and the tests build
    controller  the reconcile pass and loop, triggers, commands, the local API
    telemetry   traces, metrics, logs, sd_notify
    source|nix  the shells that talk to git and to Nix
    api         the desired-state schema (crds/) and the spec loader
    core        pure decisions over plain values; no I/O
    common      the base both processes stand on: standard library only

Beside the stack, on `common` alone:

    helper      the root-side switcher: imports nothing of pullnix but common; nobody imports it
"""

__version__ = "0.1.0"
