#!/usr/bin/env bash
# Create .venv (once) and install symnoise-trl in editable mode: `bash scripts/setup.sh [EXTRAS]`, e.g. `dev` (tests,
# lint, Triton for CPU-only torch, bitsandbytes), `qlora` (bitsandbytes), `bench` (plots); none for the quickstart.
# TORCH_SPEC picks the torch build; the default is the CPU build this project is tested with
# (an unpinned `torch` can resolve to a multi-GB CUDA build). On a GPU machine: TORCH_SPEC=torch.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "${TORCH_SPEC:-torch==2.13.0}"
.venv/bin/python -m pip install -q -e ".${1:+[$1]}"
