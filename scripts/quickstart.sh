#!/usr/bin/env bash
# From a fresh clone: set up .venv (or $VENV, as scripts/setup.sh), SymNoise-train the built-in tiny model on the shipped task data (CPU), then
# evaluate it on the 200 held-out tasks beside the untrained model and print the verdict.
# Extra arguments go to symnoise-sft (e.g. --symnoise_alpha 10; not --output_dir: the evaluation reads
# outputs/quickstart). QUICKSTART_MAX_STEPS=N trains N steps only (the README test uses it).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
venv=${VENV:-.venv}
export HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1
# One CPU thread: the tiny model's ops are too small to share, and on a busy machine torch's threads wait for each
# other at every op (docs/performance.md: a step took 682 ms on 2 threads beside 2 busy processes, 119 ms on one).
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
"$venv/bin/symnoise-sft" --config examples/quickstart.yaml ${QUICKSTART_MAX_STEPS:+--max_steps "$QUICKSTART_MAX_STEPS"} "$@"
untrained=$("$venv/bin/python" -c "from symnoise_trl.quickstart.tiny_model import tiny_model_path; print(tiny_model_path())")
"$venv/bin/symnoise-evaluate" --model outputs/quickstart --baseline "$untrained" --baseline_name untrained
