"""The base both processes stand on: standard library only.

Owns what the agent and the root helper must agree on: the machine config
(`config.py`), durations, atomic writes, URL redaction, the committed-generation
records, the helper's wire protocol (`protocol.py`, its values in
`operation.py`) and the client side of its socket (`client.py`).

Must not: import anything outside the standard library, nor anything else of
pullnix. The helper imports only this package, so a dependency can never break
the one process that must always be able to roll back.
"""
