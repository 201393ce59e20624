"""A collector that is down, for tests of trace export: a loopback port nothing listens on.

Traces themselves are read back from a real Jaeger (tests/support/jaeger.py).
"""

from __future__ import annotations

import socket


def closed_port() -> int:
    """A loopback TCP port with nothing listening (bound, then closed again)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port
