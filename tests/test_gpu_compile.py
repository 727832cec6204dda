"""The kernel compiles for real GPUs (sm_80, sm_90) on this CPU machine, without register spills.

Compilation needs Triton's compiler, not its interpreter, so it runs in a subprocess without TRITON_INTERPRET.
"""

import json
import os
import subprocess
import sys

import pytest

SCRIPT = """
import json, sys
from symnoise_trl.kernels.static_compile import compile_symnoise, resource_usage
cap, dtype, half = int(sys.argv[1]), sys.argv[2], sys.argv[3]
compiled = compile_symnoise(cap, dtype, half=half)
ptx = compiled.asm["ptx"]
print(json.dumps({**resource_usage(compiled), "target": ptx.split(".target")[1].split()[0],
                  "mul_hi": ptx.count("mul.hi.u32"), "stores": ptx.count("st.global"),
                  "vector_stores": ptx.count("st.global.v4"), "vector_loads": ptx.count("ld.global.v4")}))
"""


@pytest.mark.parametrize("capability", [80, 90])
@pytest.mark.parametrize("dtype, half", [("bfloat16", "both"), ("float32", "both"), ("float16", "minus")])
def test_compiles_for_gpu_without_spills(capability, dtype, half):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(capability), dtype, half],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    usage = json.loads(done.stdout.strip().splitlines()[-1])
    assert usage["target"] == f"sm_{capability}" + ("a" if capability == 90 else "")
    assert usage["stack"] == 0 and usage["local"] == 0, usage  # no spills
    assert 0 < usage["registers"] <= 255
    assert usage["mul_hi"] >= 20  # Philox4x32-10 is in the kernel: 2 mul.hi per round
    # Every global store of the outputs is a 16-byte vector, and x is read with 16-byte loads.
    assert usage["stores"] > 0 and usage["vector_stores"] == usage["stores"], usage
    assert usage["vector_loads"] > 0, usage
