"""The kernel compiles for real GPUs (sm_80, sm_90) on this CPU machine, without register spills.

Compilation needs Triton's compiler, not its interpreter, so it runs in a subprocess without TRITON_INTERPRET.
"""

import json
import os
import subprocess
import sys

import pytest

SCRIPT = r"""
import json, re, sys
from symnoise_trl.kernels.static_compile import compile_symnoise, resource_usage
from symnoise_trl.kernels.symnoise_triton import default_config
cap, dtype, half = int(sys.argv[1]), sys.argv[2], sys.argv[3]
compiled = compile_symnoise(cap, dtype, half=half, n_rows=16384, dim=4096)
block_rows, block_chunks, num_warps = default_config(16384, 4096)
ptx = compiled.asm["ptx"]
print(json.dumps({**resource_usage(compiled), "target": ptx.split(".target")[1].split()[0],
                  "mul_hi": ptx.count("mul.hi.u32"), "stores": ptx.count("st.global"),
                  "vector_stores": ptx.count("st.global.v4"), "vector_loads": ptx.count("ld.global.v4"),
                  "elements_per_thread": block_rows * block_chunks * 128 // (32 * num_warps),
                  "row_offsets_int64": "xi64>" in re.search(r"%offsets\S* = arith.muli .*", compiled.asm["ttir"])[0]}))
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
    # Philox4x32-10 is in the kernel (2 mul.hi per round, a few folded in the first one), and each thread runs it
    # at most once per 32 elements it writes.
    assert usage["mul_hi"] >= 15, usage
    assert usage["mul_hi"] / 20 <= usage["elements_per_thread"] / 32, usage
    assert usage["row_offsets_int64"], usage  # row * dim is formed in 64 bits
    # Every global store of the outputs is a 16-byte vector, and x is read with 16-byte loads.
    assert usage["stores"] > 0 and usage["vector_stores"] == usage["stores"], usage
    assert usage["vector_loads"] > 0, usage
