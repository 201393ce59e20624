"""The pure core: every decision pullnix makes, as functions over plain values.

Owns the pass's policy (`policy`, around the action `decide` picks), the
outcome and conditions it reports (`outcome`, `status`, `conditions`), the
agent's record and how finished helper operations change it (`record`,
`history`), the schedule of passes (`schedule`), the source's rules
(`source_policy`, `known_hosts`), the desired state as values (`model`), the
SystemLock of prebuilt systems (`lock`), freshness (`freshness`), waves
(`waves`), gates' verdicts (`vulns`), the webhook's judgement
(`webhook_events`, `connections`), and the kinds of failure (`errors`).
Tested as tables of cases.

Must not: do I/O. No subprocess, socket, git, Nix, telemetry, YAML or click
(an import-linter contract in pyproject.toml); the shells gather the inputs
and carry out the verdicts.
"""
