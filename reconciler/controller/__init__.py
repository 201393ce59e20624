"""The controller: the agent's shell around the pure core.

Owns one reconcile pass as gather, decide, act, report (`reconcile`, with
`deploy`, `gates`, `hooks`, `prebuilt`, `waves`, `helper_upgrade`, and
`status_doc` / `store` for what it writes), the loop that runs passes one at a
time (`loop`) and what wakes it (`triggers`, `webhook` over `httpguard`), the
commands that change a machine's course (`commands`), the local API the CLI
talks to (`localapi`, `apiclient`), and the assembled agent (`agent`).

Must not: decide (every policy is in `reconciler.core`), or import the CLI or
the helper (the helper is reached only through its socket).
"""
