#!/usr/bin/env bash
# The whole test suite: static checks (ruff, mypy --strict, the import-linter layer
# contracts), then every pytest tier (unit, integration with real git and real Nix,
# system with real systemd in systemd-nspawn). Installs what is missing first; when
# nothing is, install.sh returns in about a second. Arguments go to pytest.
# The quick loop while working: .venv/bin/pytest tests/unit
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export PATH="$PWD/.venv/bin:$PATH"
echo "== ruff";         ruff check reconciler tests bench && ruff format --check reconciler tests bench
echo "== mypy";         mypy
echo "== import-linter"; lint-imports
echo "== pytest";       pytest "$@"
