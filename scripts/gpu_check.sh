#!/usr/bin/env bash
# The GPU check in one command, on a CUDA machine with torch and Triton installed and no network:
#   bash scripts/gpu_check.sh [--wheels DIR] [--out DIR] [--budget SECONDS] [--limit PHASE=SECONDS]... [--quick]
#                             [--only PHASE[,PHASE...]] [--site DIR]
# Phases, in order (default: all), each under its own time limit (seconds; --limit changes one):
#   install     60   this project without dependencies, and the wheels in --wheels DIR (scripts/wheelhouse.sh DIR makes
#                    them), into --site DIR (default: a new temporary folder) first on PYTHONPATH: the machine's own
#                    torch, Triton, transformers and accelerate stay in use; then each package's version is printed
#   tests       180  pytest -m gpu tests/gpu/test_gpu.py: the compiled kernel and GPU training
#   kernel      120  benchmarks/kernel.py        train_step  120  benchmarks/train_step.py --models 100m
#   qlora       150  benchmarks/qlora_memory.py  summary      20  benchmarks/gpu_summary.py: each figure against its target
# --budget (default 540) bounds the whole run: a phase gets at most what is left of it less the summary's share, so
# the summary is always written, also after a phase failed or ran out of time (a phase that ignores the stop signal is
# killed 10 s later). --out DIR (default
# benchmarks/results/gpu_<device>) then holds at most 8 files, directly in it: summary.md, phases.csv (each phase's
# status, seconds and limit), gpu_check.log (everything the phases printed), the benchmarks' CSVs and the kernel plot.
# Exits 1 when a phase failed or timed out (the performance targets are reported, not asserted), 2 on a usage error.
# PYTHON picks the interpreter (default python3, >= 3.11). Without the install phase, --site names the folder an
# earlier run installed into.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS  # the budget counts from here: the CUDA check and the device's name come out of it too
PHASES="install,tests,kernel,train_step,qlora,summary"
declare -A LIMIT=([install]=60 [tests]=180 [kernel]=120 [train_step]=120 [qlora]=150 [summary]=20)
usage() {
    echo "usage: bash scripts/gpu_check.sh [--wheels DIR] [--out DIR] [--budget SECONDS] [--limit PHASE=SECONDS]..." \
        "[--quick] [--only PHASE[,PHASE...]] [--site DIR]" >&2
    echo "phases: $PHASES" >&2
    exit 2
}
fail() {  # a usage error: one line, exit 2
    echo "gpu_check: error: $1" >&2
    exit 2
}
is_seconds() { [[ "$1" =~ ^[0-9]+$ ]] && [ "$1" -gt 0 ]; }
wheels="" quick="" only=$PHASES site="" out="" budget=540
while [ $# -gt 0 ]; do
    case "$1" in
        --wheels) [ $# -ge 2 ] || fail "--wheels needs a folder (make one with: bash scripts/wheelhouse.sh DIR)"; wheels=$2; shift 2 ;;
        --only) [ $# -ge 2 ] || fail "--only needs phases from $PHASES"; only=$2; shift 2 ;;
        --site) [ $# -ge 2 ] || fail "--site needs a folder"; site=$2; shift 2 ;;
        --out) [ $# -ge 2 ] || fail "--out needs a folder for the results"; out=$2; shift 2 ;;
        --budget)
            [ $# -ge 2 ] && is_seconds "$2" || fail "--budget needs a whole number of seconds > 0"
            budget=$2; shift 2 ;;
        --limit)
            [ $# -ge 2 ] || fail "--limit needs PHASE=SECONDS, a phase from $PHASES"
            phase=${2%%=*} seconds=${2#*=}
            [[ "$2" == *=* && -n "$phase" && -n "${LIMIT[$phase]+set}" ]] || fail "--limit $2: PHASE=SECONDS with a phase from $PHASES"
            is_seconds "$seconds" || fail "--limit $2: the seconds must be a whole number > 0"
            LIMIT[$phase]=$seconds; shift 2 ;;
        --quick) quick=--quick; shift ;;
        -h | --help) usage ;;
        *) fail "unknown argument '$1' (arguments: --wheels DIR, --out DIR, --budget SECONDS, --limit PHASE=SECONDS, --quick, --only PHASES, --site DIR)" ;;
    esac
done
for phase in ${only//,/ }; do
    [[ ",$PHASES," == *",$phase,"* ]] || fail "unknown phase '$phase' in --only; phases: $PHASES"
done
if [ -n "$wheels" ]; then
    [ -d "$wheels" ] || fail "--wheels $wheels is not a folder (make one with: bash scripts/wheelhouse.sh DIR)"
    compgen -G "$wheels/*.whl" >/dev/null || fail "--wheels $wheels holds no .whl files"
fi
[ -z "$out" ] || [ ! -e "$out" ] || [ -d "$out" ] || fail "--out $out is a file, not a folder"
PY=${PYTHON:-python3}
run_phase() { [[ ",$only," == *",$1,"* ]]; }
if ! run_phase install && [ -z "$site" ]; then
    fail "--only without install needs --site DIR, the folder an earlier install phase used"
fi
needs_gpu=""
for phase in tests kernel train_step qlora; do run_phase $phase && needs_gpu=yes; done
if [ -n "$needs_gpu" ] && ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    echo "gpu_check: no CUDA GPU here ($PY has no torch that sees one); run it on a CUDA machine" >&2
    exit 1
fi

site=${site:-$(mktemp -d)}
mkdir -p "$site"
export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1
if [ -z "$out" ]; then
    device=$("$PY" -c 'import re, torch; print(re.sub(r"[^a-z0-9]+", "_", torch.cuda.get_device_name().lower()).strip("_"))' 2>/dev/null || echo cpu)
    out=benchmarks/results/gpu_$device
fi
mkdir -p "$out"
# A run's files only: what an earlier run left here would pass for this one's figures.
rm -f "$out"/summary.md "$out"/phases.csv "$out"/gpu_check.log "$out"/{kernel,train_step,qlora_memory}_*.{csv,png}
export SYMNOISE_RESULTS="$out"
log=$out/gpu_check.log
echo "phase,status,seconds,limit_s,exit_code" >"$out/phases.csv"
failed=()

install() {  # the install phase (run by `timeout` in a child bash: exported with what it reads)
    set -euo pipefail
    if [ -n "$wheels" ]; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$site" "$wheels"/*.whl
    fi
    # No build isolation: the site's or the machine's setuptools builds the project (an isolated build would
    # download one); a stale build/ from an earlier build could carry deleted modules along.
    rm -rf build
    "$PY" -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --upgrade --target "$site" .
    echo "gpu_check: installed symnoise-trl${wheels:+ and $(ls "$wheels"/*.whl | wc -l) wheels} into $site"
    "$PY" -P benchmarks/gpu_summary.py --versions  # imports the installed packages together, prints their versions
}
export -f install
export PY wheels site

run() {  # run PHASE COMMAND...: under the phase's limit (and what is left of the budget), into the log
    local phase=$1 limit rc status began
    shift
    local reserve=${LIMIT[summary]}
    [ "$phase" = summary ] && reserve=0
    local left=$((budget - (SECONDS - start) - reserve))
    limit=${LIMIT[$phase]}
    [ "$left" -lt "$limit" ] && limit=$left
    began=$SECONDS
    if [ "$limit" -le 0 ]; then
        echo "== phase $phase: no time left of the ${budget} s budget" | tee -a "$log"
        echo "$phase,no time left,0,0," >>"$out/phases.csv"
        failed+=("$phase")
        return
    fi
    echo "== phase $phase (limit ${limit} s)" | tee -a "$log"
    set +e
    timeout --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$log"
    rc=${PIPESTATUS[0]}
    set -e
    case $rc in
        0) status=ok ;;
        124 | 137) status="timed out" ;;
        *) status=failed ;;
    esac
    echo "== phase $phase: $status (exit $rc) after $((SECONDS - began)) s" | tee -a "$log"
    echo "$phase,$status,$((SECONDS - began)),$limit,$rc" >>"$out/phases.csv"
    [ "$status" = ok ] || failed+=("$phase")
}

# -P: not the source folder on sys.path but the installed package (its kernels/ is mapped into it)
if run_phase install; then run install bash -c install; fi
if run_phase tests; then run tests "$PY" -P -m pytest -m gpu -q -p no:cacheprovider tests/gpu/test_gpu.py; fi
if run_phase kernel; then run kernel "$PY" benchmarks/kernel.py $quick; fi
if run_phase train_step; then run train_step "$PY" benchmarks/train_step.py --models 100m; fi
if run_phase qlora; then run qlora "$PY" benchmarks/qlora_memory.py; fi
# The summary runs whenever any phase ran: it reports what each phase left, and marks the rest missing.
run summary "$PY" benchmarks/gpu_summary.py "$out"
if [ ! -s "$out/summary.md" ]; then  # no Python to write it: the phases alone, as the shell saw them
    { echo "# GPU check: the summary script failed"; echo; echo "| phase | status | seconds | limit (s) | exit |"
      echo "|---|---|---|---|---|"; tail -n +2 "$out/phases.csv" | sed 's/^/| /; s/,/ | /g; s/$/ |/'; } >"$out/summary.md"
fi
if [ ${#failed[@]} -gt 0 ]; then
    echo "gpu_check: failed or out of time: ${failed[*]} (see $out/summary.md and $log)" >&2
    exit 1
fi
