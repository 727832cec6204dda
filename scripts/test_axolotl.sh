#!/usr/bin/env bash
# SymNoisePlugin against a real Axolotl: builds .venv-axolotl (Python 3.12, axolotl==0.21.0 with its own pins, then
# this project with --no-deps so that none of Axolotl's pins move) and runs tests/integrations/test_axolotl.py, which drives
# `axolotl train` offline on a tiny local model. CI runs it after the other suites. Extra arguments go to pytest.
# Python 3.12: $AXOLOTL_PYTHON, else python3.12 on PATH, else the newest 3.12 of pyenv.
set -euo pipefail
cd "$(dirname "$0")/.."
AXOLOTL_VERSION=0.21.0
is_312() { "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' >/dev/null 2>&1; }
if [ -n "${AXOLOTL_PYTHON:-}" ] && ! is_312 "$AXOLOTL_PYTHON"; then
    echo "test_axolotl.sh: AXOLOTL_PYTHON=$AXOLOTL_PYTHON is not a Python 3.12 interpreter" >&2
    exit 1
fi
candidates=("${AXOLOTL_PYTHON:-}" python3.12)  # a pyenv shim for python3.12 exists but fails unless 3.12 is selected
if command -v pyenv >/dev/null; then
    mapfile -t installed < <(ls -d "$(pyenv root)"/versions/3.12.*/bin/python 2>/dev/null | sort -rV)
    candidates+=("${installed[@]}")
fi
python=""
for candidate in "${candidates[@]}"; do
    if [ -n "$candidate" ] && is_312 "$candidate"; then
        python=$candidate
        break
    fi
done
if [ -z "$python" ]; then
    echo "test_axolotl.sh: Axolotl $AXOLOTL_VERSION needs Python 3.12, and none was found (install it, e.g." \
        "'pyenv install 3.12', or set AXOLOTL_PYTHON to its interpreter)" >&2
    exit 1
fi
if [ ! -x .venv-axolotl/bin/python ]; then
    "$python" -m venv .venv-axolotl
fi
.venv-axolotl/bin/python -m pip install -q --upgrade pip
# NOTE: pip resolves torch for Python 3.12 to a CUDA build here (about 11 minutes and 7.6 GB from an empty cache);
# it runs on the CPU all the same.
.venv-axolotl/bin/python -m pip install -q "axolotl==$AXOLOTL_VERSION" pytest
.venv-axolotl/bin/python -m pip install -q --no-deps -e .
.venv-axolotl/bin/python -m pip check
.venv-axolotl/bin/python -m pytest -p no:cacheprovider tests/integrations/test_axolotl.py "$@"
