#!/usr/bin/env bash
# From a fresh clone: set up .venv, then SymNoise-train the built-in tiny model on the shipped task data (CPU, ~2 min).
# Extra arguments go to symnoise-sft (e.g. --max_steps 50, --symnoise_alpha 10).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 .venv/bin/symnoise-sft --config examples/quickstart.yaml "$@"
