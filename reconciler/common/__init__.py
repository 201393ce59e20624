"""The base both processes stand on: standard library only.

Owns what the agent and the root helper must agree on: the machine config
(`config.py`), durations as users write them and as pullnix prints them
(`durations.py`: `parse_duration`, `format_duration`, `human_duration`), the
status timestamp (`clock.py`), atomic writes (`atomic.py`), URL redaction
(`urls.py`), trace links (`tracelinks.py`), the committed-generation records
(`records.py`), socket binding and peer credentials (`sockets.py`), the one
runner of child processes (`child.py`: a health check, a gate, a hook, an
activation outside systemd, a Nix command) with the bounds on what their
output may leave behind (`output.py`), and one typed protocol: the framing,
version and error envelope both sockets speak (`wire.py`), the helper's
requests (`protocol.py`), health checks (`checks.py`), the operation values
(`operation.py`) and the answers in their JSON form (`answers.py`), and the
client side of the helper's socket (`client.py`).

Must not: import anything outside the standard library, nor anything else of
pullnix. The helper imports only this package, so a dependency can never break
the one process that must always be able to roll back.
"""
