"""A point-to-point network link between the host and one running container: a veth pair.

Owns the pair's life: a free private /30 (10.231.x.y, checked against every IPv4
address the host has), the host end in the host's namespace with the first address,
the other end moved into the container's network namespace (its init's, by PID)
with the second, both up, configured from the host with the host's iproute2
(`nsenter --net` into the container's namespace: the guest need not have `ip`),
and deleting the host end afterwards (which deletes both ends).

    with HostLink(box) as link:
        served_cache(tmp, host=link.host_address)   # listens on the link only
        box.run(["curl", f"http://{link.host_address}:{port}/"])

What listens on `host_address` is reachable from the container and from the host;
nothing routes between the link and any other network (no forwarding is set up,
no default route is given to the container).

Must not: touch any host interface, route or address but the pair it made.
"""

from __future__ import annotations

import ipaddress
import json
import random
import subprocess
import uuid
from types import TracebackType

from tests.system.container import Container

NETWORK = ipaddress.IPv4Network("10.231.0.0/16")


class HostLinkError(Exception):
    """`ip` refused to make or configure the link; the message has its stderr."""


def _ip(*args: str, netns_of: int | None = None) -> str:
    argv = ["ip", *args]
    if netns_of is not None:
        argv = ["nsenter", f"--target={netns_of}", "--net", "--", *argv]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        raise HostLinkError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def host_networks() -> list[ipaddress.IPv4Network]:
    """Every IPv4 network the host has an address in."""
    found = []
    for link in json.loads(_ip("-json", "-4", "addr", "show")):
        for info in link.get("addr_info", []):
            found.append(ipaddress.IPv4Network(f"{info['local']}/{info['prefixlen']}", False))
    return found


def free_subnet(rng: random.Random | None = None) -> ipaddress.IPv4Network:
    """A /30 of 10.231.0.0/16 that overlaps no network the host has an address in."""
    rng = rng or random.Random()
    taken = host_networks()
    candidates = list(NETWORK.subnets(new_prefix=30))
    for _ in range(64):
        subnet = rng.choice(candidates)
        if not any(subnet.overlaps(net) for net in taken):
            return subnet
    raise HostLinkError(f"no free /30 in {NETWORK} after 64 tries (host has {taken})")


class HostLink:
    """A veth pair: `host_address` on the host's end, `guest_address` in the container."""

    def __init__(self, box: Container) -> None:
        self.box = box
        self.subnet = free_subnet()
        first, second = list(self.subnet.hosts())
        self.host_address, self.guest_address = str(first), str(second)
        tag = uuid.uuid4().hex[:8]
        self.host_end, self.guest_end = f"pnh{tag}", f"png{tag}"
        self._made = False

    def __enter__(self) -> HostLink:
        self.up()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.down()

    def up(self) -> None:
        """Make the pair, move one end into the container, address and raise both."""
        prefix = self.subnet.prefixlen
        _ip("link", "add", self.host_end, "type", "veth", "peer", "name", self.guest_end)
        self._made = True
        try:
            _ip("link", "set", self.guest_end, "netns", str(self.box.leader))
            _ip("addr", "add", f"{self.host_address}/{prefix}", "dev", self.host_end)
            _ip("link", "set", self.host_end, "up")
            leader = self.box.leader
            _ip(
                "addr",
                "add",
                f"{self.guest_address}/{prefix}",
                "dev",
                self.guest_end,
                netns_of=leader,
            )
            _ip("link", "set", self.guest_end, "up", netns_of=leader)
        except BaseException:
            self.down()
            raise

    def down(self) -> None:
        """Delete the host end (the kernel deletes its peer with it); idempotent."""
        if not self._made:
            return
        subprocess.run(
            ["ip", "link", "delete", self.host_end],
            capture_output=True,
            timeout=30,
            check=False,
        )
        self._made = False
