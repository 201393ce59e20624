"""The command line: `pullnix` and its commands (click), the top layer.

Owns parsing options, reading the machine config for a command (`context`),
printing tables and JSON, and exit codes: the group and its list (`main`),
the commands that act on this machine (`agent_commands`), `validate` and
`schema` (`spec_commands`), `fleet status` and `fleet rollout`
(`fleet_commands`), `publish` for a fleet's CI (`publish`) and `demo`
(`demo_command`).

Must not: decide or reconcile by itself; it calls the controller, the demo and
the shells, and reaches the helper only through the controller's commands.
"""
