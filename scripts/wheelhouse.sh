#!/usr/bin/env bash
# Download the wheels that scripts/gpu_check.sh installs on a CUDA machine without network:
#   bash scripts/wheelhouse.sh DIR
# For CPython 3.12 on x86-64 manylinux, at the versions this project is tested with (read from .venv when it exists,
# else the defaults below). torch and triton are not included: the CUDA machine brings its own builds, nor is what
# a CUDA image already holds (numpy, pandas, pyarrow, accelerate, peft, tokenizers, ...). setuptools comes along: the
# project is built there without build isolation, and its metadata needs setuptools >= 77. About 57 MB; the script
# prints the size.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -ne 1 ] || [[ "$1" == -* ]]; then
    echo "usage: bash scripts/wheelhouse.sh DIR" >&2
    exit 2
fi
dir=$1
mkdir -p "$dir"
version() {  # the version .venv has of package $1, else $2
    local found=""
    [ -x .venv/bin/python ] && found=$(.venv/bin/python -c "import importlib.metadata as m; print(m.version('$1'))" 2>/dev/null || true)
    echo "${found:-$2}"
}
packages=(
    "trl==$(version trl 1.16.0)"
    "transformers==$(version transformers 5.24.0)"
    "datasets==$(version datasets 5.2.0)"
    "dill==$(version dill 0.4.1)"
    "multiprocess==$(version multiprocess 0.70.19)"
    "bitsandbytes==$(version bitsandbytes 0.50.2)"
    "setuptools==$(version setuptools 84.2.1)"
)
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
    platforms+=(--platform "$p")
done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${platforms[@]}" \
    -d "$dir" "${packages[@]}"
echo "wheelhouse: $(ls "$dir"/*.whl | wc -l) wheels, $(du -sh "$dir" | cut -f1) in $dir"
