"""Upstream repositories for tests and benchmarks, made with the real `git` command line.

Owns making the repository pullnix pulls from, the history shapes the tests
need (fast-forward, force-push to an older commit, unrelated history, tags),
signed commits (SSH and OpenPGP keys made on the spot, with the trust-root
files a machine would be configured with), and big generated histories
(`git fast-import`):

    up = Upstream.create(tmp_path / "up")          # up.git_dir is what servers export
    first = up.commit({"pullnix.yaml": "a"})        # -> sha
    signer = SshSigner.create(tmp_path / "signer", "ci@example.org")
    second = up.commit({"x": "b"}, ssh_signer=signer)
    up.reset_branch(first)                          # force-push to an older commit

Must not: know anything about pullnix internals.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

_IDENTITY = {
    "GIT_AUTHOR_NAME": "Test Author",
    "GIT_AUTHOR_EMAIL": "author@example.org",
    "GIT_COMMITTER_NAME": "Test Author",
    "GIT_COMMITTER_EMAIL": "author@example.org",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": "/dev/null",
}


def git(
    *args: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    input: bytes | None = None,
) -> str:
    """Run git with a fixed identity and no user config; return stdout, raise on failure."""
    full_env = {**os.environ, **_IDENTITY, **(env or {})}
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=full_env, input=input, capture_output=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {done.stderr.decode(errors='replace')}")
    return done.stdout.decode()


@dataclass(frozen=True)
class SshSigner:
    """An SSH signing key and the `allowed_signers` file that trusts it."""

    key: Path
    principal: str

    @classmethod
    def create(cls, directory: Path, principal: str) -> SshSigner:
        directory.mkdir(parents=True, exist_ok=True)
        key = directory / "signing_key"
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", principal, "-f", str(key)],
            check=True,
            stdin=subprocess.DEVNULL,
        )
        return cls(key, principal)

    def allowed_signers_line(self) -> str:
        kind, blob = self.key.with_suffix(".pub").read_text().split()[:2]
        return f'{self.principal} namespaces="git" {kind} {blob}\n'


@dataclass(frozen=True)
class GpgSigner:
    """An OpenPGP key in its own GNUPGHOME, and its public key exported as a keyring file."""

    home: Path
    fingerprint: str
    keyring: Path

    @classmethod
    def create(cls, directory: Path, uid: str = "CI Signer <ci@example.org>") -> GpgSigner:
        home = directory / "gnupg"
        home.mkdir(parents=True, mode=0o700, exist_ok=True)
        base = [
            "gpg",
            "--batch",
            "--homedir",
            str(home),
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
        ]
        subprocess.run(
            [*base, "--quick-gen-key", uid, "ed25519", "sign", "never"],
            check=True,
            capture_output=True,
        )
        listing = subprocess.run(
            [*base, "--with-colons", "--list-secret-keys"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        fingerprint = next(
            line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:")
        )
        keyring = directory / "trusted.gpg"
        exported = subprocess.run(
            [*base, "--export", fingerprint], check=True, capture_output=True
        ).stdout
        keyring.write_bytes(exported)
        return cls(home, fingerprint, keyring)

    def stop(self) -> None:
        """End the gpg-agent that signing started in this GNUPGHOME (it outlives the test)."""
        subprocess.run(
            ["gpgconf", "--homedir", str(self.home), "--kill", "gpg-agent"],
            check=False,
            capture_output=True,
        )


@dataclass(frozen=True)
class Upstream:
    """A repository with a work tree; `git_dir` (ROOT/fleet.git) is what servers export."""

    root: Path
    branch: str = "main"

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def git_dir(self) -> Path:
        return self.root / "fleet.git"

    @property
    def file_url(self) -> str:
        return f"file://{self.git_dir}"

    @classmethod
    def create(cls, root: Path, branch: str = "main") -> Upstream:
        root.mkdir(parents=True, exist_ok=True)
        up = cls(root, branch)
        git("init", "-q", "-b", branch, f"--separate-git-dir={up.git_dir}", str(up.work))
        git("config", "uploadpack.allowAnySHA1InWant", "true", cwd=up.work)
        return up

    def git(self, *args: str, env: dict[str, str] | None = None) -> str:
        return git(*args, cwd=self.work, env=env)

    def commit(
        self,
        files: dict[str, str | bytes] | None = None,
        message: str = "change",
        ssh_signer: SshSigner | None = None,
        gpg_signer: GpgSigner | None = None,
    ) -> str:
        """Write `files` (path -> content), commit them (signed if asked); return the sha."""
        for name, content in (files or {"counter": os.urandom(8).hex()}).items():
            path = self.work / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content)
        self.git("add", "-A")
        sign: list[str] = []
        env: dict[str, str] = {}
        if ssh_signer is not None:
            sign = ["-c", "gpg.format=ssh", "-c", f"user.signingkey={ssh_signer.key}"]
        elif gpg_signer is not None:
            sign = ["-c", "gpg.format=openpgp", "-c", f"user.signingkey={gpg_signer.fingerprint}"]
            env["GNUPGHOME"] = str(gpg_signer.home)
        args = [*sign, "commit", "-q", "--allow-empty", "-m", message]
        if sign:
            args.append("-S")
        self.git(*args, env=env)
        return self.head()

    def head(self) -> str:
        return self.git("rev-parse", "HEAD").strip()

    def tag(self, name: str, sha: str, annotated: bool = True) -> None:
        if annotated:
            self.git("tag", "-a", "-m", f"tag {name}", name, sha)
        else:
            self.git("tag", name, sha)

    def reset_branch(self, sha: str) -> None:
        """Move the branch to `sha` as a force-push would."""
        self.git("reset", "-q", "--hard", sha)

    def orphan(
        self,
        files: dict[str, str | bytes] | None = None,
        message: str = "unrelated",
    ) -> str:
        """Replace the branch with a new, unrelated history of one commit."""
        self.git("checkout", "-q", "--orphan", "tmp-orphan")
        self.git("rm", "-rq", "--cached", ".")
        sha = self.commit(files or {"unrelated": "yes"}, message)
        self.git("branch", "-q", "-M", self.branch)
        return sha

    def generate(self, commits: int, files: int = 50) -> str:
        """Append `commits` commits that each touch one of `files` files, via fast-import."""
        try:
            parent = self.head()
        except RuntimeError:
            parent = ""
        stream = bytearray()
        when = 1_700_000_000
        for i in range(commits):
            content = f"commit {i}\n".encode() * 4
            stream += b"commit refs/heads/%s\n" % self.branch.encode()
            stream += b"committer Gen <gen@example.org> %d +0000\n" % (when + i)
            msg = b"generated %d\n" % i
            stream += b"data %d\n%s" % (len(msg), msg)
            if i == 0 and parent:
                stream += b"from %s\n" % parent.encode()
            stream += b"M 100644 inline dir%d/file%d\ndata %d\n%s\n" % (
                i % 10,
                i % files,
                len(content),
                content,
            )
        git(f"--git-dir={self.git_dir}", "fast-import", "--quiet", input=bytes(stream))
        self.git("reset", "-q", "--hard", self.branch)
        return self.head()
