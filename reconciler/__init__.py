"""pullnix: a pull-based GitOps reconciler for NixOS.

Layers, top to bottom (enforced by the import-linter contracts in pyproject.toml):

    cli         the command line
    controller  the reconcile loop, triggers, the local API
    telemetry   traces, metrics, logs
    source|nix  the shells that talk to git and to Nix
    api         the desired-state schema (crds/) and the spec loader
    core        pure decisions over plain values; no I/O
    helper      the root-side switcher: standard library only, imports nothing above
"""

__version__ = "0.1.0"
