#!/usr/bin/env bash
# The floors lane: the tests marked `floors` against the lowest versions pyproject.toml allows, in .venv-floors. Every
# `>=` bound of the dependencies and of the dev extra is installed exactly (not ruff: no lint here; not deepspeed: no
# floors test needs it), with constraints/gpu-machine.txt: the GPU machine's own torch 2.11, Triton 3.6, transformers
# 5.17 and accelerate 1.15 and what they share with it, so what passes here is the stack scripts/gpu_check.sh runs on.
# torch 2.11 is a CUDA build (PyPI has no CPU one): it runs on the CPU. CI runs this after scripts/test.sh. Extra
# arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
floors=$(python3 - <<'PY'
import re, tomllib
with open("pyproject.toml", "rb") as f:
    project = tomllib.load(f)["project"]
pins = [re.sub(r">=", "==", d) for d in project["dependencies"]]
pins += [re.sub(r">=", "==", d) for d in project["optional-dependencies"]["dev"] if not d.startswith(("ruff", "deepspeed"))]
print(" ".join(pins))
PY
)
echo "floors: $floors"
python3 -m venv .venv-floors
.venv-floors/bin/python -m pip install -q --upgrade pip
# shellcheck disable=SC2086
.venv-floors/bin/python -m pip install -q $floors -c constraints/gpu-machine.txt
.venv-floors/bin/python -m pip install -q --no-deps -e .
.venv-floors/bin/python -m pip check
.venv-floors/bin/pytest -m floors "$@"  # the tests marked `floors`
