"""Kernels: the fused SymNoise Triton kernel and its host launcher.

One program owns a tile of BLOCK_ROWS rows x BLOCK_CHUNKS chunks of CHUNK = 128 columns. It loads x once, draws the
signs with one Philox4x32-10 per (row, chunk) - 4 words = the signs of 128 columns - and stores x + s*eps and/or
x - s*eps. The noise exists only in registers; the backward needs none of it (d/dx of both halves is the identity).
docs/noise-stream.md is the specification.
"""

import torch
import triton
import triton.language as tl

from . import reference

# Columns whose signs come from one Philox call. A constexpr: Triton reads no plain Python globals inside @triton.jit.
CHUNK = tl.constexpr(reference.CHUNK)


@triton.jit
def _output_bits(v, DTYPE: tl.constexpr, NAN_BITS: tl.constexpr):
    """fp32 values -> the integer bits of DTYPE, rounded to nearest even, every NaN written as NAN_BITS."""
    # NOTE: stores go through integer views for two reasons. The interpreter truncates on .to(tl.bfloat16) while
    # compiled code rounds to nearest even, so bf16 is rounded on the integer bits. And NaN bits differ by backend
    # (NVIDIA arithmetic returns 0x7FFFFFFF, x86 keeps the payload), so every NaN is written as one pattern.
    is_nan = v != v
    if DTYPE == tl.bfloat16:
        b = v.to(tl.uint32, bitcast=True)
        bits = ((b + 0x7FFF + ((b >> 16) & 1)) >> 16).to(tl.int16)
    elif DTYPE == tl.float16:
        bits = v.to(tl.float16).to(tl.int16, bitcast=True)
    else:
        bits = v.to(tl.int32, bitcast=True)
    return tl.where(is_nan, NAN_BITS, bits)


@triton.jit
def _rademacher_positive(seed, rows, chunks, BLOCK_ROWS: tl.constexpr, BLOCK_CHUNKS: tl.constexpr):
    """(rows, chunks, CHUNK) booleans: eps = +1 where True. The signs of docs/noise-stream.md, section 1."""
    # NOTE: computed directly on the (rows, chunks) broadcast shape, Philox is rematerialised by the compiler in
    # the load layout, where the 16 threads that share a 128-lane chunk each run it: 4 calls per thread per 32
    # bf16 elements (65 mul.hi in the sm_90 PTX). A max over a duplicated axis of size 2 is a reduction the
    # compiler keeps, so Philox runs once per thread (17 mul.hi) and its words reach the lanes through 1 KiB of
    # shared memory. The two copies are equal, so the max changes no bit.
    zero = tl.zeros((BLOCK_ROWS, BLOCK_CHUNKS, 2), dtype=tl.uint32)
    ctr_row = rows.to(tl.uint32)[:, None, None] + zero
    ctr_chunk = chunks.to(tl.uint32)[None, :, None] + zero
    w0, w1, w2, w3 = tl.philox(seed, ctr_row, ctr_chunk, zero, zero)
    w0, w1, w2, w3 = tl.max(w0, axis=2), tl.max(w1, axis=2), tl.max(w2, axis=2), tl.max(w3, axis=2)
    # Column CHUNK c + 32 q + b takes bit b of word q.
    lanes = tl.arange(0, CHUNK)
    q = (lanes >> 5)[None, None, :]
    word = tl.where(
        q == 0, w0[:, :, None], tl.where(q == 1, w1[:, :, None], tl.where(q == 2, w2[:, :, None], w3[:, :, None]))
    )
    return ((word >> (lanes & 31).to(tl.uint32)[None, None, :]) & 1) != 0


@triton.jit
def _symnoise_kernel(
    x_ptr,  # (n_rows, dim) input, contiguous: fp32, fp16 or bf16
    out_ptr,  # the output as integers of x's width (see _output_bits): the plus half, then the minus half
    scale_ptr,  # (n_rows,) fp32 scales; read only when SCALE_PER_ROW
    scale_value,  # the one scale of every row when not SCALE_PER_ROW
    seed,  # the Philox key, an int in [0, 2**63)
    n_rows,
    dim,
    minus_offset,  # where the minus half starts in out_ptr: n_rows * dim when both halves are written, else 0
    SCALE_PER_ROW: tl.constexpr,
    WRITE_PLUS: tl.constexpr,  # write x + s*eps
    WRITE_MINUS: tl.constexpr,  # write x - s*eps
    NAN_BITS: tl.constexpr,  # the canonical NaN of x's dtype, as an integer (reference.CANONICAL_NAN_BITS)
    BLOCK_ROWS: tl.constexpr,  # rows per program
    BLOCK_CHUNKS: tl.constexpr,  # 128-column chunks per program
):
    # NOTE: int64 program ids and offsets: a (2, 16, 8192, 8192) output has 2**31 elements, so the minus half's
    # offsets pass 2**31 - 1.
    pid_row = tl.program_id(0).to(tl.int64)
    pid_chunk = tl.program_id(1).to(tl.int64)
    rows = pid_row * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS).to(tl.int64)
    chunks = pid_chunk * BLOCK_CHUNKS + tl.arange(0, BLOCK_CHUNKS).to(tl.int64)

    # Load. The tile is (rows, chunks, CHUNK lanes): the Philox counters live on the first two axes only, so the
    # generator runs once per CHUNK elements and its words broadcast over the lanes.
    cols = chunks[:, None] * CHUNK + tl.arange(0, CHUNK)[None, :]
    row_ok = rows < n_rows
    mask = row_ok[:, None, None] & (cols < dim)[None, :, :]
    offsets = rows[:, None, None] * dim + cols[None, :, :]
    DTYPE: tl.constexpr = x_ptr.dtype.element_ty
    x = tl.load(x_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
    if SCALE_PER_ROW:
        s = tl.load(scale_ptr + rows, mask=row_ok, other=0.0).to(tl.float32)[:, None, None]
    else:
        s = tl.full((BLOCK_ROWS, 1, 1), scale_value, tl.float32)  # fp32 even where the arg was specialised fp64

    # Signs.
    positive = _rademacher_positive(seed, rows, chunks, BLOCK_ROWS, BLOCK_CHUNKS)
    noise = tl.where(positive, s, -s)  # s * eps, exact
    keep = s == 0.0  # padding rows come back bit for bit (x + 0.0 would turn -0.0 into +0.0)

    # Store.
    if WRITE_PLUS:
        tl.store(out_ptr + offsets, _output_bits(tl.where(keep, x, x + noise), DTYPE, NAN_BITS), mask=mask)
    if WRITE_MINUS:
        tl.store(
            out_ptr + minus_offset + offsets, _output_bits(tl.where(keep, x, x - noise), DTYPE, NAN_BITS), mask=mask
        )


def default_config(n_rows: int, dim: int) -> tuple[int, int, int]:
    """(block_rows, block_chunks, num_warps): about 4096 elements per program, at most 1024 columns wide."""
    chunk = reference.CHUNK
    block_chunks = min(triton.next_power_of_2(triton.cdiv(dim, chunk)), 8)
    block_rows = min(max(4096 // (block_chunks * chunk), 1), triton.next_power_of_2(max(n_rows, 1)))
    num_warps = 4 if block_rows * block_chunks * chunk >= 2048 else 2
    return block_rows, block_chunks, num_warps


def symnoise_triton(
    x2d: torch.Tensor,
    scale: torch.Tensor | None,
    scale_value: float,
    seed: int,
    half: str,
    config: tuple[int, int, int] | None = None,
    out_shape: tuple[int, ...] | None = None,
) -> torch.Tensor:
    """Launch the kernel on a contiguous (N, d) tensor; returns (2, N, d) for half="both", else (N, d), or that
    memory allocated in `out_shape`.

    `scale` is an fp32 (N,) tensor, or None for one `scale_value` on every row. `config` overrides the
    (block_rows, block_chunks, num_warps) heuristic; the output never depends on it.
    """
    # NOTE: the kernel indexes x as row * dim + column and the scale as row: strided views would be read at the
    # wrong addresses.
    if not x2d.is_contiguous() or (scale is not None and not scale.is_contiguous()):
        raise ValueError(
            f"symnoise_triton needs a contiguous (N, d) tensor and (N,) scale, got strides {x2d.stride()} and "
            f"{None if scale is None else scale.stride()}"
        )
    n_rows, dim = x2d.shape
    shape = out_shape or ((2,) if half == "both" else ()) + (n_rows, dim)
    out = torch.empty(shape, dtype=x2d.dtype, device=x2d.device)
    if out.numel() == 0:
        return out
    block_rows, block_chunks, num_warps = config or default_config(n_rows, dim)
    grid = (triton.cdiv(n_rows, block_rows), triton.cdiv(dim, block_chunks * reference.CHUNK))
    _symnoise_kernel[grid](
        x2d,
        out.view(reference.INT_VIEW[x2d.dtype]),  # see _output_bits
        scale if scale is not None else x2d,  # unused pointer when SCALE_PER_ROW is False
        float(scale_value),
        seed,
        n_rows,
        dim,
        n_rows * dim if half == "both" else 0,  # where the minus half starts in `out`
        SCALE_PER_ROW=scale is not None,
        WRITE_PLUS=half != "minus",
        WRITE_MINUS=half != "plus",
        NAN_BITS=reference.CANONICAL_NAN_BITS[x2d.dtype],
        BLOCK_ROWS=block_rows,
        BLOCK_CHUNKS=block_chunks,
        num_warps=num_warps,
    )
    return out
