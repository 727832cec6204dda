"""Compile the SymNoise kernel for a real GPU target without a GPU, and read its resource usage.

A development tool next to the benchmark that uses it (static_check.py); the tests use it too (the kernel builds for
sm_80/sm_90 without spills). Triton ships ptxas and cuobjdump, so `triton.compile` produces PTX and a cubin on a
CPU-only machine. Needs compiled Triton: under TRITON_INTERPRET=1 the kernel is an interpreted function and cannot
be compiled.
"""

import os
import re
import subprocess
import tempfile

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from symnoise_trl.kernels.reference import CANONICAL_NAN_BITS, CHUNK, PHILOX_ROUND_A, PHILOX_ROUNDS
from symnoise_trl.kernels.symnoise_triton import _symnoise_kernel, default_config

_POINTER = {"float32": "*fp32", "float16": "*fp16", "bfloat16": "*bf16"}
_OUT_POINTER = {"float32": "*i32", "float16": "*i16", "bfloat16": "*i16"}  # outputs are stored as integer bits


def compile_symnoise(
    capability: int,
    dtype: str = "bfloat16",
    *,
    half: str = "both",
    per_row_scale: bool = True,
    n_rows: int = 16384,
    dim: int = 4096,
):
    """triton.compile the kernel for CUDA `capability` (80, 90, ...) with the launch config used for (n_rows, dim).

    Pointers, `dim` and `minus_offset` are marked divisible by 16, as Triton's launcher specialises them for
    aligned tensors and sizes.
    """
    if dtype not in _POINTER:
        raise ValueError(f"dtype must be one of {tuple(_POINTER)}, got {dtype!r}")
    block_rows, block_chunks, num_warps = default_config(n_rows, dim)
    signature = {
        "x_ptr": _POINTER[dtype], "out_ptr": _OUT_POINTER[dtype], "scale_ptr": "*fp32", "scale_value": "fp32",
        "seed": "i64", "n_rows": "i32", "dim": "i32", "minus_offset": "i64",
        "SCALE_PER_ROW": "constexpr", "WRITE_PLUS": "constexpr", "WRITE_MINUS": "constexpr", "NAN_BITS": "constexpr",
        "BLOCK_ROWS": "constexpr", "BLOCK_CHUNKS": "constexpr",
    }  # fmt: skip
    constexprs = {
        "SCALE_PER_ROW": per_row_scale, "WRITE_PLUS": half != "minus", "WRITE_MINUS": half != "plus",
        "NAN_BITS": CANONICAL_NAN_BITS[getattr(torch, dtype)], "BLOCK_ROWS": block_rows, "BLOCK_CHUNKS": block_chunks,
    }  # fmt: skip
    aligned = [["tt.divisibility", 16]]
    attrs = {
        (_symnoise_kernel.arg_names.index(name),): aligned
        for name in ("x_ptr", "out_ptr", "scale_ptr", "dim", "minus_offset")
    }
    source = ASTSource(fn=_symnoise_kernel, signature=signature, constexprs=constexprs, attrs=attrs)
    return triton.compile(source, target=GPUTarget("cuda", capability, 32), options={"num_warps": num_warps})


def resource_usage(compiled) -> dict[str, int]:
    """Registers, stack, shared and local memory per thread from `cuobjdump --dump-resource-usage` of the cubin.

    Without a GPU driver, CompiledKernel has no n_regs/n_spills; STACK or LOCAL above 0 means spills.
    """
    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    with tempfile.NamedTemporaryFile(suffix=".cubin") as cubin:
        cubin.write(compiled.asm["cubin"])
        cubin.flush()
        text = subprocess.run(
            [tool, "--dump-resource-usage", cubin.name], capture_output=True, text=True, check=True
        ).stdout
    match = re.search(r"REG:(\d+) STACK:(\d+) SHARED:(\d+) LOCAL:(\d+)", text)
    if match is None:
        raise RuntimeError(f"no resource usage line in cuobjdump output:\n{text}")
    return dict(zip(("registers", "stack", "shared", "local"), map(int, match.groups()), strict=True))


def kernel_report(capability: int, dtype: str = "bfloat16", *, half: str = "both", per_row_scale: bool = True,
                  n_rows: int = 16384, dim: int = 4096) -> dict:  # fmt: skip
    """What the compiled kernel does per thread, read off its PTX and cubin.

    `philox_per_element` is Philox calls per output element written by a thread: every round multiplies counter
    word 0 by 0xD2511F53 and keeps the low word (one `mul.lo` each; the high word may become a `mul.wide`), so
    calls = (those mul.lo) / 10. Global accesses are counted per PTX
    instruction; 16-byte ones are `.v4.b32`. The per-row scale load is a 4-byte `ld.global.b32`.
    """
    compiled = compile_symnoise(capability, dtype, half=half, per_row_scale=per_row_scale, n_rows=n_rows, dim=dim)
    ptx = compiled.asm["ptx"]
    block_rows, block_chunks, num_warps = default_config(n_rows, dim)
    elements_per_thread = block_rows * block_chunks * CHUNK // (32 * num_warps)
    resources = resource_usage(compiled)
    signed_a = PHILOX_ROUND_A - 2**32  # PTX prints the immediate as a signed 32-bit number
    philox_calls = len(re.findall(rf"mul\.lo\.[su]32\s+%r\d+, %r\d+, {signed_a};", ptx)) / PHILOX_ROUNDS
    loads = re.findall(r"ld\.global[.\w]*", ptx)
    stores = re.findall(r"st\.global[.\w]*", ptx)
    return {
        "capability": capability,
        "dtype": dtype,
        "half": half,
        "block_rows": block_rows,
        "block_chunks": block_chunks,
        "num_warps": num_warps,
        **resources,
        "spills": resources["stack"] + resources["local"] > 0,
        "elements_per_thread": elements_per_thread,
        "philox_calls_per_thread": philox_calls,
        "philox_per_element": philox_calls / elements_per_thread,
        "global_loads": len(loads),
        "global_loads_16B": sum(op.endswith(".v4.b32") for op in loads),
        "global_stores": len(stores),
        "global_stores_16B": sum(op.endswith(".v4.b32") for op in stores),
        "row_offsets_int64": "xi64>" in re.search(r"%offsets\S* = arith.muli .*", compiled.asm["ttir"])[0],
    }
