#!/usr/bin/env bash
# From a fresh clone: set up .venv, SymNoise-train the built-in tiny model on the shipped task data (CPU, about
# 1.5 minutes of training), then evaluate it on the 200 held-out tasks and print one line of results.
# Extra arguments go to symnoise-sft (e.g. --symnoise_alpha 10; not --output_dir: the evaluation reads
# outputs/quickstart). QUICKSTART_MAX_STEPS=N trains N steps only (the README test uses it).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1
.venv/bin/symnoise-sft --config examples/quickstart.yaml ${QUICKSTART_MAX_STEPS:+--max_steps "$QUICKSTART_MAX_STEPS"} "$@"
.venv/bin/symnoise-evaluate --model outputs/quickstart
