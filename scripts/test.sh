#!/usr/bin/env bash
# Set up .venv (or $VENV, as scripts/setup.sh) with the dev extra and run the checks: ruff, then the pytest suite
# (CPU only; Triton through its interpreter). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
venv=${VENV:-.venv}
"$venv/bin/ruff" check .
"$venv/bin/ruff" format --check .
SYMNOISE_ONLY_GPU_SKIPS=1 "$venv/bin/pytest" "$@"  # no skip but the GPU tests (tests/conftest.py)
