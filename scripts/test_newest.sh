#!/usr/bin/env bash
# The newest lane: the whole suite against the newest releases pyproject.toml allows, what a new user's pip resolves
# today, in .venv-newest (torch stays the CPU build setup.sh installs: a newer torch is a multi-GB CUDA build here).
# It prints what moved since constraints/lock.txt. CI runs it after scripts/test.sh; when it passes on new versions,
# `bash scripts/lock.sh .venv-newest` moves the lock to them. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
SYMNOISE_DEPS=newest VENV=.venv-newest bash scripts/setup.sh dev
echo "newest lane, against the lock:"
bash scripts/lock.sh .venv-newest - | diff constraints/lock.txt - | grep '^[<>] [^#]' || echo "  nothing moved"
SYMNOISE_ONLY_GPU_SKIPS=1 .venv-newest/bin/pytest "$@"  # no skip but the GPU tests
