#!/usr/bin/env bash
# Create a virtual environment (once) and install symnoise-trl in editable mode: `bash scripts/setup.sh [EXTRAS]`, e.g.
# `dev` (tests, lint, Triton for CPU-only torch, bitsandbytes, DeepSpeed, ShareGPT), `qlora` (bitsandbytes), `bench`
# (plots), `sharegpt` (ShareGPT conversations); none for the quickstart.
#   SYMNOISE_DEPS=lock (default) installs with constraints/lock.txt: the exact versions CI last passed with.
#   SYMNOISE_DEPS=newest installs the newest releases pyproject.toml allows instead (what a new user's pip gets).
#   VENV names the environment's folder (default .venv).
#   TORCH_SPEC picks the torch build; the default is the CPU build this project is tested with (an unpinned `torch`
#   can resolve to a multi-GB CUDA build). On a GPU machine: TORCH_SPEC=torch.
set -euo pipefail
cd "$(dirname "$0")/.."
deps=${SYMNOISE_DEPS:-lock}
venv=${VENV:-.venv}
[[ "$deps" == lock || "$deps" == newest ]] || { echo "setup.sh: SYMNOISE_DEPS must be lock or newest, got '$deps'" >&2; exit 2; }
python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q "${TORCH_SPEC:-torch==2.13.0}"
# The constraints: torch as TORCH_SPEC installed it, and the Triton a CUDA build of torch brings (a CPU build brings
# none), then, for the lock, every other line of constraints/lock.txt.
constraints=$(mktemp)
trap 'rm -f "$constraints"' EXIT
"$venv/bin/python" - "$constraints" "$deps" <<'PY'
import importlib.metadata as metadata
import re
import sys

path, deps = sys.argv[1:]
held = {"torch": metadata.version("torch")}
for requirement in metadata.requires("torch") or []:
    name = re.match(r"[A-Za-z0-9_.-]+", requirement).group(0)
    if name == "triton" and "extra ==" not in requirement:
        try:
            held[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
lines = [f"{name}=={version}\n" for name, version in held.items()]
if deps == "lock":
    with open("constraints/lock.txt") as f:
        lines += [line for line in f if line.split("==")[0].strip().lower() not in held]
with open(path, "w") as f:
    f.writelines(lines)
PY
upgrade=()
[ "$deps" = newest ] && upgrade=(--upgrade --upgrade-strategy eager)
"$venv/bin/python" -m pip install -q ${upgrade[@]+"${upgrade[@]}"} -c "$constraints" -e ".${1:+[$1]}"
