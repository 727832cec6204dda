#!/usr/bin/env bash
# Download the wheels that scripts/gpu_check.sh installs on the GPU machine, which has no network:
#   bash scripts/wheelhouse.sh DIR
# That machine holds the floors' torch 2.11, Triton 3.6, transformers 5.17 and accelerate 1.15 (pyproject.toml's lower
# bounds are its stack), so only what it lacks travels, at the floors lane's versions (.venv-floors when it exists,
# else the defaults below): trl, datasets and the two packages of datasets' that it lacks (dill, multiprocess),
# bitsandbytes, peft (its version there is not known; the floors' one is what was tested), and setuptools (the project
# is built there without build isolation, and its metadata needs setuptools >= 77). For CPython 3.12 on x86-64
# manylinux. About 40 MB, under the 64 MB a device call carries; the script prints the size.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -ne 1 ] || [[ "$1" == -* ]]; then
    echo "usage: bash scripts/wheelhouse.sh DIR" >&2
    exit 2
fi
dir=$1
mkdir -p "$dir"
version() {  # the version .venv-floors has of package $1, else $2
    local found=""
    [ -x .venv-floors/bin/python ] && found=$(.venv-floors/bin/python -c "import importlib.metadata as m; print(m.version('$1'))" 2>/dev/null || true)
    echo "${found:-$2}"
}
packages=(
    "trl==$(version trl 1.14.1)"
    "peft==$(version peft 0.21.2)"
    "datasets==$(version datasets 5.0.1)"
    "dill==$(version dill 0.4.1)"
    "multiprocess==$(version multiprocess 0.70.19)"
    "bitsandbytes==$(version bitsandbytes 0.50.2)"
    "setuptools==80.9.0"  # >= 77 for the metadata, < 82 for torch 2.11
)
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
    platforms+=(--platform "$p")
done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${platforms[@]}" \
    -d "$dir" "${packages[@]}"
echo "wheelhouse: $(ls "$dir"/*.whl | wc -l) wheels, $(du -sh "$dir" | cut -f1) in $dir"
