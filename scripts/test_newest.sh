#!/usr/bin/env bash
# The newest lane: the lock lane's checks against the newest releases pyproject.toml allows, what a new user's pip
# resolves today, in .venv-newest (torch stays the CPU build setup.sh installs: a newer torch is a multi-GB CUDA build
# here). VENV and SYMNOISE_DEPS are exported, so the README's and the guides' blocks (setup, quickstart) run on it too.
# It prints what moved since constraints/lock.txt; once it passes on new versions, `bash scripts/lock.sh .venv-newest`
# moves the lock to them (docs/compatibility.md). CI runs it after scripts/test.sh. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
export VENV=.venv-newest SYMNOISE_DEPS=newest
bash scripts/setup.sh dev
newest=$(bash scripts/lock.sh .venv-newest -)
moved=$(diff constraints/lock.txt - <<<"$newest" | grep '^[<>] [^#]' || true)
echo "newest lane, against the lock:"
echo "${moved:-  nothing moved}"
SYMNOISE_ONLY_GPU_SKIPS=1 .venv-newest/bin/pytest "$@"  # no skip but the GPU tests
