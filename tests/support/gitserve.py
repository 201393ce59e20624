"""Real git servers on 127.0.0.1 for tests and benchmarks: git daemon and smart HTTP.

Owns starting, stopping and restarting the network transports pullnix pulls
over (SSH is sshserve.py's), each as a context manager that yields a small handle:

    with GitDaemon.serving(base) as daemon:         # git://127.0.0.1:PORT/<name>
        url = daemon.url("fleet.git")
    with HttpGitServer.serving(base, token="s3cret") as http:   # 401 without the token
        url = http.url("fleet.git"); http.requests  # [(method, path, status), ...]
    with HttpGitServer.serving(base, "s3cret", tls=self_signed_certificate(d)) as https: ...
    with silent_listener() as port: ...    # accepts connections and never says a word

(sshd is `sshserve.SshGitServer`.)

Every handle has `stop()` and `start()` (same port again), so a test can take a
server down and bring it back. Ports are free ports picked at start; every
process is started with an argument list and stopped by its own pid.

Must not: know anything about pullnix; mock a server; touch anything outside the
directories it is given.
"""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HTTP_BACKEND = "/usr/lib/git-core/git-http-backend"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(
    port: int,
    timeout: float = 10.0,
    proc: subprocess.Popen[bytes] | None = None,
) -> None:
    """Block until 127.0.0.1:`port` accepts a connection; fail if `proc` dies first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def stop_process(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.kill()
    proc.wait(timeout=10)


# --------------------------------------------------------------------------- git daemon


def _git_daemon() -> str:
    exec_path = subprocess.run(
        ["git", "--exec-path"], capture_output=True, text=True, check=True
    ).stdout.strip()
    return str(Path(exec_path) / "git-daemon")


@dataclass
class GitDaemon:
    """`git daemon` exporting every repository under `base_path` as git://127.0.0.1:PORT/NAME."""

    base_path: Path
    port: int = field(default_factory=free_port)
    log_file: Path | None = None
    _proc: subprocess.Popen[bytes] | None = None

    @classmethod
    @contextlib.contextmanager
    def serving(cls, base_path: Path) -> Iterator[GitDaemon]:
        daemon = cls(base_path)
        daemon.start()
        try:
            yield daemon
        finally:
            daemon.stop()

    def url(self, name: str) -> str:
        return f"git://127.0.0.1:{self.port}/{name}"

    def start(self) -> None:
        self.log_file = self.log_file or self.base_path.parent / f"git-daemon-{self.port}.log"
        with self.log_file.open("ab") as log:
            self._proc = subprocess.Popen(  # git-daemon itself, so stop() kills the listener
                [
                    _git_daemon(),
                    "--reuseaddr",
                    "--verbose",
                    "--listen=127.0.0.1",
                    f"--port={self.port}",
                    f"--base-path={self.base_path}",
                    "--export-all",
                    "--informative-errors",
                    str(self.base_path),
                ],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
            )
        wait_for_port(self.port, proc=self._proc)

    def stop(self) -> None:
        stop_process(self._proc)
        self._proc = None

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """The daemon stopped (SIGSTOP) inside the block: connections wait in the kernel's
        backlog and a fetch hangs, as against a stalled server, until it is continued."""
        assert self._proc is not None
        self._proc.send_signal(signal.SIGSTOP)
        try:
            yield
        finally:
            self._proc.send_signal(signal.SIGCONT)

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file else ""


# --------------------------------------------------------------------------- smart HTTP


@dataclass
class HttpGitServer:
    """`git http-backend` behind a threaded HTTP server that demands a token.

    Accepted: `Authorization: Bearer TOKEN` (unless `accept_bearer` is False), or
    HTTP basic with any user name and TOKEN as the password; anything else gets
    401 with a Basic challenge. `users` logs the basic user names seen.
    `requests` logs every request as (method, path, status). Setting
    `cut_packs` to N makes the next N pack responses (POST .../git-upload-pack)
    stop halfway and drop the connection, as a server killed mid-fetch would.
    """

    project_root: Path
    token: str
    port: int = field(default_factory=free_port)
    requests: list[tuple[str, str, int]] = field(default_factory=list)
    cut_packs: int = 0
    accept_bearer: bool = True
    tls: tuple[Path, Path] | None = None  # (certificate, key): serve https://
    users: list[str] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    @contextlib.contextmanager
    def serving(
        cls,
        project_root: Path,
        token: str,
        tls: tuple[Path, Path] | None = None,
    ) -> Iterator[HttpGitServer]:
        server = cls(project_root, token, tls=tls)
        server.start()
        try:
            yield server
        finally:
            server.stop()

    def url(self, name: str) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}/{name}"

    def start(self) -> None:
        handler = _make_handler(self)
        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        if self.tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*self.tls)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def pack_requests(self) -> list[tuple[str, str, int]]:
        """The requests that asked for a pack (POST .../git-upload-pack)."""
        return [r for r in self.requests if r[0] == "POST" and r[1].endswith("git-upload-pack")]

    def _authorized(self, header: str | None) -> bool:
        if not header:
            return False
        kind, _, value = header.partition(" ")
        if kind.lower() == "bearer":
            return self.accept_bearer and value.strip() == self.token
        if kind.lower() == "basic":
            with contextlib.suppress(ValueError):
                user, _, password = base64.b64decode(value.strip()).decode().partition(":")
                self.users.append(user)
                return password == self.token
        return False

    def _take_cut(self) -> bool:
        with self._lock:
            if self.cut_packs > 0:
                self.cut_packs -= 1
                return True
            return False


def _make_handler(server: HttpGitServer) -> type[BaseHTTPRequestHandler]:  # noqa: C901
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass  # the request log is `server.requests`

        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def _reply(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
            server.requests.append((self.command, self.path.split("?")[0], status))
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while True:
                    size = int(self.rfile.readline().strip().split(b";")[0], 16)
                    if size == 0:
                        self.rfile.readline()
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _serve(self) -> None:
            body = self._body() if self.command == "POST" else b""
            if not server._authorized(self.headers.get("Authorization")):
                self._reply(401, [("WWW-Authenticate", 'Basic realm="git"')], b"token required\n")
                return
            path, _, query = self.path.partition("?")
            env = {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "GIT_PROJECT_ROOT": str(server.project_root),
                "GIT_HTTP_EXPORT_ALL": "1",
                "GATEWAY_INTERFACE": "CGI/1.1",
                "REQUEST_METHOD": self.command,
                "PATH_INFO": path,
                "QUERY_STRING": query,
                "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                "CONTENT_LENGTH": str(len(body)),
                "REMOTE_ADDR": "127.0.0.1",
                "REMOTE_USER": "token",
            }
            for header, var in (
                ("Content-Encoding", "HTTP_CONTENT_ENCODING"),
                ("Git-Protocol", "GIT_PROTOCOL"),
            ):
                if self.headers.get(header):
                    env[var] = self.headers[header]
            out = subprocess.run(
                [HTTP_BACKEND], input=body, env=env, capture_output=True, check=False
            ).stdout
            head, _, payload = out.partition(b"\r\n\r\n")
            if not _:
                head, _, payload = out.partition(b"\n\n")
            status, headers = 200, []
            for line in head.decode("latin-1").splitlines():
                name, _, value = line.partition(":")
                if name.lower() == "status":
                    status = int(value.strip().split()[0])
                elif name:
                    headers.append((name, value.strip()))
            if self.command == "POST" and path.endswith("git-upload-pack") and server._take_cut():
                server.requests.append((self.command, path, -status))
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload[: len(payload) // 2])
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                return
            self._reply(status, headers, payload)

    return Handler


def self_signed_certificate(directory: Path, ip: str = "127.0.0.1") -> tuple[Path, Path]:
    """A certificate for `ip` (in subjectAltName) and its key, made with openssl."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            f"/CN={ip}",
            "-addext",
            f"subjectAltName=IP:{ip}",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@contextlib.contextmanager
def silent_listener() -> Iterator[int]:
    """A port on 127.0.0.1 that accepts every connection and never answers (a stalled
    server: neither an HTTP response nor an SSH banner ever comes). Yields the port."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.2)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=5)
        for conn in held:
            conn.close()
        listener.close()


# --------------------------------------------------------------------------- sshd
