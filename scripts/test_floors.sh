#!/usr/bin/env bash
# The trainer tests against the lowest versions pyproject.toml allows: a second environment, .venv-floors, with every
# `>=` bound of the project's dependencies installed exactly (torch==2.13.0 resolves to the CPU build here, as in
# setup.sh), running the tests marked `floors`. CI runs it after scripts/test.sh, so the floors stay true. Extra
# arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
floors=$(python3 - <<'PY'
import re, tomllib
with open("pyproject.toml", "rb") as f:
    project = tomllib.load(f)["project"]
pins = [re.sub(r">=", "==", d) for d in project["dependencies"]]
pins += [d for d in project["optional-dependencies"]["dev"] if not d.startswith(("ruff", "triton"))]
print(" ".join(pins))
PY
)
echo "floors: $floors"
python3 -m venv .venv-floors
.venv-floors/bin/python -m pip install -q --upgrade pip
# shellcheck disable=SC2086
.venv-floors/bin/python -m pip install -q $floors
.venv-floors/bin/python -m pip install -q --no-deps -e .
.venv-floors/bin/pytest -m floors "$@"  # the tests marked `floors`
