"""Unix sockets both processes listen on: binding safely and knowing the peer.

Owns `bind` (parent created, mode 0660, a stale socket replaced, a live one
refused) and `peer_credentials` (SO_PEERCRED). The helper's socket and the
agent's local API both use them.

Must not: decide who is allowed; each server checks the uid it gets here.
"""

from __future__ import annotations

import os
import socket
import stat
import struct
from pathlib import Path

_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


class SocketInUse(OSError):
    """Another process already answers on the socket, or the path is not a socket."""


def bind(path: Path, who: str = "helper") -> socket.socket:
    """Listen on `path`: mode 0660, a stale socket replaced, a live one refused (SocketInUse,
    naming `who` listens there). The agent's local API binds its socket the same way."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    if path.exists() or path.is_symlink():
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise SocketInUse(f"{path} exists and is not a socket; refusing to replace it")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink()  # stale: nobody listens
        else:
            raise SocketInUse(f"another {who} is listening on {path}")
        finally:
            probe.close()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o117)
    try:
        listener.bind(str(path))
    finally:
        os.umask(old)
    os.chmod(path, 0o660)
    listener.listen(64)
    return listener


def peer_credentials(conn: socket.socket) -> tuple[int, int, int]:
    pid, uid, gid = _UCRED.unpack(
        conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    )
    return pid, uid, gid
