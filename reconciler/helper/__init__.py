"""The helper: the root process that activates, verifies, commits or rolls back.

This package is an island: it imports the standard library and itself, nothing
else, so no dependency change can break the one process that must always be
able to roll back. The agent side may import from here (the protocol, the
machine config); never the other way round.
"""
