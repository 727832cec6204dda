"""Kernels: the pure-torch reference of the SymNoise noise stream (docs/noise-stream.md) and of the op's arithmetic.

Everything here is bit-exact with the Triton kernel and runs anywhere torch runs. Philox4x32-10 is
written out with int64 tensors: a 32x32-bit product does not fit a signed 64-bit integer, so each
multiplier is split into 16-bit halves and the 64-bit product is rebuilt from two 48-bit ones.
"""

from numbers import Integral

import torch

MASK32 = 0xFFFFFFFF
PHILOX_ROUND_A = 0xD2511F53  # multiplies counter word 0
PHILOX_ROUND_B = 0xCD9E8D57  # multiplies counter word 2
PHILOX_KEY_A = 0x9E3779B9  # Weyl increments of the key
PHILOX_KEY_B = 0xBB67AE85
PHILOX_ROUNDS = 10

CHUNK = 128  # columns whose signs come from one Philox call: 4 words x 32 bits
MAX_SEED = 2**63
MAX_ROWS = 2**32  # the row is Philox counter word 0, a uint32


def _mulhilo32(a: torch.Tensor, multiplier: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(hi, lo) 32-bit words of a * multiplier, for int64 tensors holding uint32 values."""
    m_hi, m_lo = multiplier >> 16, multiplier & 0xFFFF
    low = a * m_lo  # < 2**48
    high = a * m_hi  # < 2**48; the full product is high * 2**16 + low
    hi = (high + (low >> 16)) >> 16
    lo = (((high & 0xFFFF) << 16) + low) & MASK32
    return hi, lo


def philox4x32(
    c0: torch.Tensor, c1: torch.Tensor, c2: torch.Tensor, c3: torch.Tensor, k0: int, k1: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random123 Philox4x32-10, vectorised over counters (int64 tensors holding uint32 values)."""
    c0, c1, c2, c3 = (torch.as_tensor(c, dtype=torch.int64) & MASK32 for c in (c0, c1, c2, c3))
    for _ in range(PHILOX_ROUNDS):
        hi_a, lo_a = _mulhilo32(c0, PHILOX_ROUND_A)
        hi_b, lo_b = _mulhilo32(c2, PHILOX_ROUND_B)
        c0, c1, c2, c3 = hi_b ^ c1 ^ k0, lo_b, hi_a ^ c3 ^ k1, lo_a
        k0, k1 = (k0 + PHILOX_KEY_A) & MASK32, (k1 + PHILOX_KEY_B) & MASK32
    return c0, c1, c2, c3


def check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, Integral):
        raise TypeError(f"seed must be an int in [0, 2**63), got {type(seed).__name__}")
    if not 0 <= seed < MAX_SEED:
        raise ValueError(f"seed must be in [0, 2**63), got {seed}")
    return int(seed)


def sign_bytes(n_rows: int, dim: int, seed: int, device=None, first_row: int = 0) -> torch.Tensor:
    """int64 (n_rows, 16 * chunks): the random bytes of stream rows first_row, first_row + 1, ...; bit k of byte i
    of a row is the sign of column 8 i + k (1 = +1). Bit b of word q of chunk c is bit (b & 7) of byte 16 c + 4 q +
    (b >> 3)."""
    n_chunks = -(-dim // CHUNK)
    rows = torch.arange(first_row, first_row + n_rows, device=device, dtype=torch.int64)[:, None]
    chunks = torch.arange(n_chunks, device=device, dtype=torch.int64)[None, :]
    zero = torch.zeros((), device=device, dtype=torch.int64)
    words = philox4x32(
        rows.expand(n_rows, n_chunks), chunks.expand(n_rows, n_chunks), zero, zero, seed & MASK32, seed >> 32
    )
    words = torch.stack(words, dim=-1)  # (N, C, 4), uint32 values in int64
    shifts = torch.arange(0, 32, 8, device=device)  # made on the device: a host tensor's copy would sync
    return ((words[..., None] >> shifts) & 0xFF).reshape(n_rows, 16 * n_chunks)


def bits_of_bytes(device=None) -> torch.Tensor:
    """int64 (256, 8): bit k of each byte value."""
    return (torch.arange(256, device=device)[:, None] >> torch.arange(8, device=device)) & 1


def signs_from_bytes(byte_values: torch.Tensor, dim: int, table: torch.Tensor) -> torch.Tensor:
    """(rows, dim) of table[bit] for the sign bytes of `sign_bytes` (a row block of them), where `table` maps each
    byte value to its 8 columns' values, (256, 8). One gather of small values instead of shifts and masks over
    N*d integers."""
    return table[byte_values.reshape(-1)].reshape(byte_values.shape[0], 8 * byte_values.shape[1])[:, :dim]


def rademacher_signs(n_rows: int, dim: int, seed: int, device=None, first_row: int = 0) -> torch.Tensor:
    """int8 (n_rows, dim) of +-1: eps(n, j) of docs/noise-stream.md, section 1, for rows first_row, first_row + 1,
    ... (no argument checks)."""
    table = (bits_of_bytes(device) * 2 - 1).to(torch.int8)
    return signs_from_bytes(sign_bytes(n_rows, dim, seed, device, first_row), dim, table)


def rademacher(n_rows: int, dim: int, seed: int, device=None) -> torch.Tensor:
    """The Rademacher signs eps(n, j) of docs/noise-stream.md as an int8 (n_rows, dim) tensor of +-1."""
    for name, value in (("n_rows", n_rows), ("dim", dim)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a non-negative int, got {value!r}")
    if n_rows > MAX_ROWS:
        raise ValueError(f"n_rows must be at most 2**32 (the row is a 32-bit Philox counter), got {n_rows}")
    return rademacher_signs(n_rows, dim, check_seed(seed), device).contiguous()


# The one NaN pattern the op writes per dtype (NaN bits otherwise differ between GPU and CPU arithmetic).
CANONICAL_NAN_BITS = {torch.float32: 0x7FC00000, torch.float16: 0x7E00, torch.bfloat16: 0x7FC0}
INT_VIEW = {torch.float32: torch.int32, torch.float16: torch.int16, torch.bfloat16: torch.int16}


def store_rounding(v: torch.Tensor, dtype: torch.dtype, may_have_nan: bool = True) -> torch.Tensor:
    """The kernel's store: fp32 -> dtype, round to nearest even, every NaN as CANONICAL_NAN_BITS[dtype]."""
    out = v.to(dtype)  # torch rounds to nearest even (the kernel does the same on the integer bits for bf16)
    if may_have_nan:
        nan = torch.isnan(v)
        if nan.any():
            out.view(INT_VIEW[dtype])[nan] = CANONICAL_NAN_BITS[dtype]
    return out


def symnoise_reference(
    x2d: torch.Tensor, scale: torch.Tensor, seed: int, half: str, first_row: int = 0
) -> torch.Tensor:
    """The op on a contiguous (N, d) tensor with an fp32 (N,) scale: (2, N, d) for "both", else (N, d). The rows are
    rows first_row, first_row + 1, ... of the stream (a slice of a larger input).

    fp32 arithmetic: y = x + s * eps, where s * eps is exact (a sign flip), so every backend rounds the
    same single addition. Rows with s == 0 return x itself (bit for bit, -0.0 included).
    """
    n_rows, dim = x2d.shape
    noise = rademacher_signs(n_rows, dim, seed, x2d.device, first_row) * scale[:, None]  # fp32 +-s, exact
    xf = x2d.float()
    halves = [h for h in ("plus", "minus") if half in ("both", h)]
    out = torch.empty((len(halves), n_rows, dim), dtype=torch.float32, device=x2d.device)
    for i, h in enumerate(halves):
        (torch.add if h == "plus" else torch.sub)(xf, noise, out=out[i])
    keep = scale == 0
    if keep.any():  # x + 0.0 would turn -0.0 into +0.0
        out[:, keep] = xf[keep]
    # x + finite noise is NaN only where x is: check the (smaller) input rather than the output.
    return store_rounding(out if half == "both" else out[0], x2d.dtype, bool(torch.isnan(x2d).any()))
