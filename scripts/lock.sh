#!/usr/bin/env bash
# Write the lock: every package a virtual environment holds, at its exact version, except torch (setup.sh's
# TORCH_SPEC picks its build), the CUDA libraries a torch build brings, and this project itself.
#   bash scripts/lock.sh [VENV] [FILE]    defaults: .venv and constraints/lock.txt; FILE - prints it
# Moving the lock: run the newest lane (bash scripts/test_newest.sh); once it passes, `bash scripts/lock.sh
# .venv-newest`, then commit constraints/lock.txt with the CI run that passed on it.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${1:-.venv}
file=${2:-constraints/lock.txt}
[ -x "$venv/bin/python" ] || { echo "lock.sh: $venv is not a virtual environment (make one: bash scripts/setup.sh dev)" >&2; exit 2; }
lock() {
    echo "# The lock: the exact versions CI last passed with (scripts/setup.sh installs with it by default; torch is"
    echo "# TORCH_SPEC's). Written by scripts/lock.sh from $venv on $(date -u +%Y-%m-%d): docs/compatibility.md says how it moves."
    "$venv/bin/python" -m pip list --format=freeze --exclude-editable |
        grep -v -i -E '^(torch|symnoise-trl|symnoise_trl|nvidia-[a-z0-9_-]+|pip|setuptools|wheel)==' | LC_ALL=C sort -f
}
if [ "$file" = - ]; then lock; else lock >"$file"; echo "lock.sh: wrote $file"; fi
