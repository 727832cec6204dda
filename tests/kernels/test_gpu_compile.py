"""The kernel compiles for real GPUs (sm_80, sm_90) on this CPU machine: no spills, 16-byte global accesses,
64-bit row offsets, and at most one Philox call per 32 elements a thread writes.

Compilation needs Triton's compiler, not its interpreter, so it runs in a subprocess without TRITON_INTERPRET.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).parents[2] / "benchmarks"
SCRIPT = """
import json, sys
sys.path.insert(0, sys.argv[5])
from static_compile import kernel_report
report = kernel_report(int(sys.argv[1]), sys.argv[2], half=sys.argv[3], per_row_scale=sys.argv[4] == "row",
                       n_rows=16384, dim=4096)
print(json.dumps(report))
"""


@pytest.mark.parametrize("capability", [80, 90])
@pytest.mark.parametrize(
    "dtype, half, scale",
    [
        ("bfloat16", "both", "row"),
        ("float32", "both", "row"),
        ("float16", "minus", "row"),
        ("bfloat16", "plus", "scalar"),
    ],
)
def test_compiles_for_gpu(capability, dtype, half, scale):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    command = [sys.executable, "-c", SCRIPT, str(capability), dtype, half, scale, str(BENCHMARKS)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["stack"] == 0 and report["local"] == 0 and not report["spills"], report
    assert 0 < report["registers"] <= 255
    assert 0.5 <= report["philox_calls_per_thread"], report  # Philox4x32-10 is there...
    assert report["philox_per_element"] <= 1 / 32, report  # ...and runs at most once per 32 elements
    # x is read with 16-byte loads and every store of the outputs is a 16-byte vector.
    assert report["global_loads_16B"] > 0, report
    assert report["global_stores"] > 0 and report["global_stores_16B"] == report["global_stores"], report
    assert report["row_offsets_int64"], report  # row * dim is formed in 64 bits
