#!/usr/bin/env bash
# Set up .venv and run the checks: ruff, then the pytest suite (CPU only; Triton through its interpreter).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/pytest "$@"
