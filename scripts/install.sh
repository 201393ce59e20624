#!/usr/bin/env bash
# Install everything pullnix and its tests need on a fresh Debian 12 / Ubuntu machine, as root:
# Debian's Nix (nix-bin), git, OpenSSH (server for the SSH transport tests), GnuPG,
# debootstrap and systemd-container (the real-systemd tier), Prometheus (the fleet tests), then a venv in .venv with
# pullnix installed editable with its test extras. Idempotent: skips what is present.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for pair in nix:nix-bin git:git sshd:openssh-server ssh-keygen:openssh-client gpg:gnupg \
            debootstrap:debootstrap systemd-nspawn:systemd-container python3:python3 \
            curl:curl openssl:openssl /usr/bin/time:time nginx:nginx prometheus:prometheus; do
    cmd=${pair%%:*} pkg=${pair#*:}
    command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || need+=("$pkg")
done
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then need+=(python3-venv); fi
if [ ${#need[@]} -gt 0 ]; then
    echo "install.sh: installing Debian packages: ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
if ! .venv/bin/python -c 'import reconciler, pygit2, pytest, importlinter' >/dev/null 2>&1 \
   || [ pyproject.toml -nt .venv/.installed ]; then
    .venv/bin/pip install -q --disable-pip-version-check -e '.[test]' 2>&1 | grep -v '^WARNING: Location' || true
    .venv/bin/python -c 'import reconciler, pygit2, pytest, importlinter'
    touch .venv/.installed
fi

bash scripts/install-jaeger.sh >/dev/null || [ $? -eq 2 ]  # Jaeger for the trace tests; 2: no Go here
