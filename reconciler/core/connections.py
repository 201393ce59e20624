"""A bounded HTTP receiver's policy: which connection to close, and whom to let in.

Owns two pure decisions over the receiver's table of open connections:

- `overdue`: the connections whose deadline has passed. A connection gets its
  deadline when it is accepted (the whole request, headers and body, must arrive
  by then, so a client that trickles its headers a byte at a time is cut off
  like one that sends nothing), and a new one when it starts lingering after a
  refusal.
- `admit`: a new connection when the table is full. Below the cap it is let in.
  At the cap, the oldest connection that is still only *reading* its request (or
  lingering after a refusal) is shed to make room, so a flood of half-open
  connections cannot lock out a forge that sends its push in one go. When every
  connection is at work, the new one is refused.

Must not: touch a socket or read the clock (`controller/httpguard.py` does both).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass


class Phase(enum.Enum):
    READING = "reading"  # accepted; its request line, headers and body not all read yet
    WORKING = "working"  # the request is read; the receiver judges and answers it
    LINGERING = "lingering"  # refused (413, 411); the answer sent, the rest of the body drained


#: Phases whose connection may be shed for a newcomer: nothing of theirs is lost.
SHEDDABLE = frozenset({Phase.READING, Phase.LINGERING})


@dataclass(frozen=True)
class Conn:
    key: int
    accepted: float  # monotonic seconds
    phase: Phase
    deadline: float  # monotonic seconds; past it, the receiver closes the connection


@dataclass(frozen=True)
class Admit:
    pass


@dataclass(frozen=True)
class Shed:
    key: int  # close this one, then let the newcomer in


@dataclass(frozen=True)
class Refuse:
    pass


Admission = Admit | Shed | Refuse


def overdue(conns: Iterable[Conn], now: float) -> list[int]:
    """The keys of the connections whose deadline has passed, oldest first."""
    return [c.key for c in sorted(conns, key=lambda c: c.accepted) if now >= c.deadline]


def admit(conns: Iterable[Conn], limit: int) -> Admission:
    """What to do with a new connection while `conns` are open and at most `limit` may be."""
    table = list(conns)
    if len(table) < limit:
        return Admit()
    sheddable = [c for c in table if c.phase in SHEDDABLE]
    if not sheddable:
        return Refuse()
    return Shed(min(sheddable, key=lambda c: (c.accepted, c.key)).key)
