"""A real sshd on 127.0.0.1 serving git over SSH, for the SSH transport's tests.

Owns `SshGitServer` (its own host key, a deploy key in `authorized_keys`, start,
stop and start again on the same port) and `ssh_keygen`:

    with SshGitServer.serving(tmp_path / "ssh") as ssh:         # sshd with a deploy key
        url = ssh.url(repo_path); ssh.deploy_key; ssh.known_hosts_line()
    ssh.authorize(key, command="sleep 600")  # a key whose session runs that instead of git

Must not: know anything about pullnix; touch anything outside the directory it
is given (apart from sshd's privilege-separation dir /run/sshd).
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.gitserve import free_port, stop_process, wait_for_port

SSHD = "/usr/sbin/sshd"


def ssh_keygen(path: Path, comment: str = "test", kind: str = "ed25519") -> Path:
    """Make a passphrase-less key pair at `path` / `path`.pub; return the private key path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
    )
    return path


@dataclass
class SshGitServer:
    """An `sshd` on 127.0.0.1:PORT with its own host key, serving git over SSH as root.

    `deploy_key` is the private key sshd accepts (in `authorized_keys`); repositories
    are reached by absolute path: `url(repo)` -> ssh://root@127.0.0.1:PORT/abs/repo.
    `known_hosts_line()` pins the host key the way OpenSSH writes it for a
    non-standard port (`[127.0.0.1]:PORT ssh-ed25519 AAAA...`), optionally hashed.
    """

    workdir: Path
    port: int = field(default_factory=free_port)
    _proc: subprocess.Popen[bytes] | None = None

    @classmethod
    @contextlib.contextmanager
    def serving(cls, workdir: Path) -> Iterator[SshGitServer]:
        server = cls(workdir)
        server.setup()
        server.start()
        try:
            yield server
        finally:
            server.stop()

    @property
    def host_key(self) -> Path:
        return self.workdir / "ssh_host_ed25519_key"

    @property
    def deploy_key(self) -> Path:
        return self.workdir / "deploy_key"

    @property
    def config_file(self) -> Path:
        return self.workdir / "sshd_config"

    @property
    def log_file(self) -> Path:
        return self.workdir / "sshd.log"

    def url(self, repo: Path) -> str:
        return f"ssh://root@127.0.0.1:{self.port}{repo.resolve()}"

    def host_key_blob(self) -> tuple[str, str]:
        """(key type, base64 blob) of the server's host key."""
        kind, blob = self.host_key.with_suffix(".pub").read_text().split()[:2]
        return kind, blob

    def known_hosts_line(self, hashed: bool = False) -> str:
        kind, blob = self.host_key_blob()
        host = f"[127.0.0.1]:{self.port}"
        if hashed:
            import hashlib
            import hmac

            salt = os.urandom(20)
            digest = hmac.new(salt, host.encode(), hashlib.sha1).digest()
            host = f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"
        return f"{host} {kind} {blob}\n"

    def setup(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        ssh_keygen(self.host_key, "host")
        ssh_keygen(self.deploy_key, "deploy")
        shutil.copy(self.deploy_key.with_suffix(".pub"), self.workdir / "authorized_keys")
        self.config_file.write_text(
            f"Port {self.port}\n"
            "ListenAddress 127.0.0.1\n"
            f"HostKey {self.host_key}\n"
            f"AuthorizedKeysFile {self.workdir / 'authorized_keys'}\n"
            f"PidFile {self.workdir / 'sshd.pid'}\n"
            "PermitRootLogin prohibit-password\n"
            "StrictModes no\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "UsePAM no\n"
            "PrintMotd no\n"
            "LogLevel VERBOSE\n"
        )

    def authorize(self, key: Path, command: str | None = None) -> None:
        """Let the key pair `key` (its .pub) log in too; with `command`, sshd runs that
        instead of what the client asks for (read per login: no restart needed)."""
        prefix = f'command="{command}",no-pty ' if command else ""
        with (self.workdir / "authorized_keys").open("a") as keys:
            keys.write(prefix + key.with_suffix(".pub").read_text())

    def start(self) -> None:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation dir
        with self.log_file.open("ab") as log:
            self._proc = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(self.config_file)],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
            )
        wait_for_port(self.port, proc=self._proc)

    def stop(self) -> None:
        stop_process(self._proc)
        self._proc = None

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")
