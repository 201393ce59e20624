"""The helper: the root process that activates, verifies, commits or rolls back.

This package is an island on the base: it imports the standard library,
`reconciler.common` and itself, nothing else, so no dependency change can break
the one process that must always be able to roll back. Nobody imports it: what
both sides share (the machine config, the protocol, its client) lives in
`reconciler.common`, and the agent reaches the helper only through its socket.
"""
