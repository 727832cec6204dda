#!/usr/bin/env bash
# The GPU check in one command, on a CUDA machine with torch and Triton installed and no network:
#   bash scripts/gpu_check.sh [--wheels DIR] [--quick] [--only PHASES] [--site DIR]
# Phases, in order (default: all): install, tests, kernel, train_step, qlora, summary.
#   install     this project without dependencies, and the wheels in --wheels DIR (scripts/wheelhouse.sh DIR makes
#               them), into --site DIR (default: a new temporary folder) first on PYTHONPATH: the machine's own
#               torch, Triton, peft and accelerate stay in use (transformers too, unless the wheels bring one)
#   tests       pytest -m gpu: the compiled kernel and GPU training (tests/test_gpu.py)
#   kernel      benchmarks/kernel.py        train_step  benchmarks/train_step.py
#   qlora       benchmarks/qlora_memory.py  summary     benchmarks/gpu_summary.py: each figure against its target
# Writes benchmarks/results/gpu_<device>/ (CSV, PNG, logs, summary.md). Exits non-zero when a GPU test fails or a
# benchmark crashes (the later phases and the summary still run); the performance targets are reported, not
# asserted. PYTHON picks the interpreter (default python3, >= 3.11). Without the install phase, --site names the
# folder an earlier run installed into.
set -euo pipefail
cd "$(dirname "$0")/.."
PHASES="install,tests,kernel,train_step,qlora,summary"
usage() {
    echo "usage: bash scripts/gpu_check.sh [--wheels DIR] [--quick] [--only PHASE[,PHASE...]] [--site DIR]" >&2
    echo "phases: $PHASES" >&2
    exit 2
}
fail() {  # a usage error: one line, exit 2
    echo "gpu_check: error: $1" >&2
    exit 2
}
wheels="" quick="" only=$PHASES site=""
while [ $# -gt 0 ]; do
    case "$1" in
        --wheels) [ $# -ge 2 ] || fail "--wheels needs a folder (make one with: bash scripts/wheelhouse.sh DIR)"; wheels=$2; shift 2 ;;
        --only) [ $# -ge 2 ] || fail "--only needs phases from $PHASES"; only=$2; shift 2 ;;
        --site) [ $# -ge 2 ] || fail "--site needs a folder"; site=$2; shift 2 ;;
        --quick) quick=--quick; shift ;;
        -h | --help) usage ;;
        *) fail "unknown argument '$1' (arguments: --wheels DIR, --quick, --only PHASES, --site DIR)" ;;
    esac
done
for phase in ${only//,/ }; do
    [[ ",$PHASES," == *",$phase,"* ]] || fail "unknown phase '$phase' in --only; phases: $PHASES"
done
if [ -n "$wheels" ]; then
    [ -d "$wheels" ] || fail "--wheels $wheels is not a folder (make one with: bash scripts/wheelhouse.sh DIR)"
    compgen -G "$wheels/*.whl" >/dev/null || fail "--wheels $wheels holds no .whl files"
fi
PY=${PYTHON:-python3}
run_phase() { [[ ",$only," == *",$1,"* ]]; }
if ! run_phase install && [ -z "$site" ]; then
    fail "--only without install needs --site DIR, the folder an earlier install phase used"
fi

if [ "$only" != "install" ]; then
    if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
        echo "gpu_check: no CUDA GPU here ($PY has no torch that sees one); run it on a CUDA machine" >&2
        exit 1
    fi
fi

site=${site:-$(mktemp -d)}
mkdir -p "$site"
export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1
if run_phase install; then
    if [ -n "$wheels" ]; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$site" "$wheels"/*.whl
    fi
    # No build isolation: the site's or the machine's setuptools builds the project (an isolated build would
    # download one); a stale build/ from an earlier build could carry deleted modules along.
    rm -rf build
    "$PY" -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --upgrade --target "$site" .
    echo "gpu_check: installed symnoise-trl${wheels:+ and $(ls "$wheels"/*.whl | wc -l) wheels} into $site"
fi
[ "$only" = "install" ] && exit 0

device=$("$PY" -c 'import re, torch; print(re.sub(r"[^a-z0-9]+", "_", torch.cuda.get_device_name().lower()).strip("_"))')
results=benchmarks/results/gpu_$device
mkdir -p "$results"
export SYMNOISE_RESULTS="$results"
failed=()
logged() {  # logged NAME COMMAND...: run it into $results/NAME.log; a failure is noted, and the check goes on
    local name=$1 rc
    shift
    set +e
    "$@" 2>&1 | tee "$results/$name.log"
    rc=${PIPESTATUS[0]}
    set -e
    if [ "$rc" -ne 0 ]; then
        echo "gpu_check: $name failed (exit $rc); see $results/$name.log" >&2
        failed+=("$name")
    fi
}
# -P: not the source folder on sys.path but the installed package (its kernels/ is mapped into it)
if run_phase tests; then logged tests "$PY" -P -m pytest -m gpu -q -p no:cacheprovider tests; fi
if run_phase kernel; then logged kernel "$PY" benchmarks/kernel.py $quick; fi
if run_phase train_step; then logged train_step "$PY" benchmarks/train_step.py --models 100m; fi
if run_phase qlora; then logged qlora "$PY" benchmarks/qlora_memory.py; fi
if run_phase summary; then "$PY" benchmarks/gpu_summary.py "$results"; fi
if [ ${#failed[@]} -gt 0 ]; then
    echo "gpu_check: failed: ${failed[*]}" >&2
    exit 1
fi
