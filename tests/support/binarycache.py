"""A real HTTP binary cache: `nix copy --to file://DIR` served by Debian's nginx.

Owns what the prebuilt tests (and the benchmark) need of a Nix binary cache:
a signing key pair made by `nix-store --generate-binary-cache-key`, a cache
directory filled by `nix copy`, nginx serving it on a free port of one address
(127.0.0.1, or the host's end of a system-tier container's link), started by
the test and stopped after, and its access log read back, so a
test can show that narinfo and NAR requests reached the cache. Also the one
way tests remove a path they built from the local store (`nix-store
--delete`, only paths the test made), so the machine really has to fetch.

Must not: touch the machine's own nginx, its nix.conf, or any store path a
test did not build itself.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
_REQUEST = re.compile(r'"GET (?P<path>\S+) HTTP/[0-9.]+" (?P<status>\d{3}) (?P<bytes>\d+)')


@dataclass(frozen=True)
class KeyPair:
    name: str
    secret: Path
    public: str  # "name:base64", as trusted-public-keys wants it


def generate_key(directory: Path, name: str) -> KeyPair:
    """A new signing key pair, written under `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    secret, public = directory / f"{name}.secret", directory / f"{name}.public"
    subprocess.run(
        ["nix-store", "--generate-binary-cache-key", name, str(secret), str(public)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return KeyPair(name, secret, public.read_text().strip())


def nix(*args: str, timeout: float = 300) -> str:
    result = subprocess.run(
        ["nix", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"nix {' '.join(args)} failed:\n{result.stderr}")
    return result.stdout


def copy_to(directory: Path, store_path: str) -> None:
    """`nix copy` the closure of `store_path` into a file:// cache at `directory`."""
    nix("copy", "--to", f"file://{directory}", store_path)


def sign(store_path: str, key: KeyPair) -> None:
    nix("store", "sign", "--recursive", "--key-file", str(key.secret), store_path)


def delete_path(store_path: str) -> None:
    """Remove a path this test built from the local store, so it must be fetched again."""
    result = subprocess.run(
        ["nix-store", "--delete", store_path],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if os.path.exists(store_path):
        raise RuntimeError(f"could not delete {store_path}:\n{result.stderr}")


def in_store(store_path: str) -> bool:
    return os.path.exists(store_path)


@dataclass
class Cache:
    """nginx serving `root` at `url`; `requests()` reads its access log."""

    root: Path
    port: int
    access_log: Path
    host: str = "127.0.0.1"  # the only address nginx listens on
    proc: subprocess.Popen[bytes] | None = None

    def url(self, sub: str = "") -> str:
        return f"http://{self.host}:{self.port}/{sub}".rstrip("/")

    def requests(self) -> list[tuple[str, int, int]]:
        """(path, status, bytes) of every GET so far, oldest first."""
        try:
            text = self.access_log.read_text(errors="replace")
        except FileNotFoundError:
            return []
        out = []
        for line in text.splitlines():
            if m := _REQUEST.search(line):
                out.append((m["path"], int(m["status"]), int(m["bytes"])))
        return out

    def bytes_served(self) -> int:
        """Bytes of every response body so far (narinfo, NAR and the rest)."""
        return sum(size for _path, _status, size in self.requests())


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _config(cache: Cache, work: Path) -> Path:
    for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    conf = work / "nginx.conf"
    conf.write_text(
        f"""\
user root;
worker_processes 1;
daemon off;
pid {work}/nginx.pid;
error_log {work}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log {cache.access_log} combined;
    client_body_temp_path {work}/client_body;
    proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fastcgi;
    uwsgi_temp_path {work}/uwsgi;
    scgi_temp_path {work}/scgi;
    default_type application/octet-stream;
    types {{ text/x-nix-narinfo narinfo; }}
    server {{
        listen {cache.host}:{cache.port};
        root {cache.root};
        location / {{ }}
    }}
}}
"""
    )
    return conf


def start(cache: Cache, work: Path, timeout: float = 30) -> None:
    """Start nginx for `cache` (on its port) and wait until it accepts connections."""
    conf = _config(cache, work)
    with (work / "stderr.log").open("ab") as stderr:
        cache.proc = subprocess.Popen(
            [NGINX, "-c", str(conf), "-p", str(work)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    deadline = time.monotonic() + timeout
    while True:
        if cache.proc.poll() is not None:
            raise RuntimeError(
                f"nginx exited {cache.proc.returncode}: {(work / 'stderr.log').read_text()}"
            )
        try:
            socket.create_connection((cache.host, cache.port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError("nginx did not start listening") from None
            time.sleep(0.05)


def stop(cache: Cache) -> None:
    """Stop nginx (SIGTERM: fast shutdown) and wait for it; the port stays the cache's."""
    if cache.proc is None:
        return
    if cache.proc.poll() is None:
        cache.proc.send_signal(signal.SIGTERM)
        try:
            cache.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            cache.proc.kill()
            cache.proc.wait()
    cache.proc = None


@contextmanager
def served_cache(directory: Path, host: str = "127.0.0.1") -> Iterator[Cache]:
    """A cache root under `directory` served by nginx on a free port of `host` (an address
    of this machine); stopped on exit."""
    root = directory / "cache"
    root.mkdir(parents=True, exist_ok=True)
    work = directory / "nginx"
    work.mkdir(parents=True, exist_ok=True)
    last: Exception | None = None
    for _ in range(5):  # a free port can be taken by someone else before nginx binds it
        cache = Cache(root, _free_port(host), work / "access.log", host)
        try:
            start(cache, work)
            break
        except RuntimeError as exc:
            last = exc
    else:
        raise RuntimeError(f"nginx would not start: {last}")
    try:
        yield cache
    finally:
        stop(cache)
