"""Kernels: the SymNoise op, its torch.library registration and autograd, an unchecked and a checked entry.

`symnoise(x, scale, seed)` returns stack(x + scale*eps, x - scale*eps) with eps the Rademacher signs of the noise
stream; docs/noise-stream.md is the specification. The Triton backend and the torch reference give the same bits.

The registered op writes the two copies one after the other along a dimension `dim` of x before which every size is
1 (0 always qualifies): (2 * B, T, d) for a padded (B, T, d) batch, (1, 2 * T, d) for a packed row. That is the
memory of stack(...) as well, so `symnoise` views it as (2, *x.shape), while the trainer's plan takes it as the
doubled batch itself, allocated in that shape: no copy, and no view for torch.compile to guard on.
"""

import math
from numbers import Real

import torch

from .reference import MAX_ROWS, check_seed
from .symnoise_torch import symnoise_torch

try:
    import triton

    from .symnoise_triton import symnoise_triton
except ImportError:  # CPU-only torch builds do not bring Triton; the torch backend still works
    triton = None
    symnoise_triton = None

DTYPES = (torch.float32, torch.float16, torch.bfloat16)
HALVES = ("both", "plus", "minus")
BACKENDS = ("auto", "triton", "torch")


def check_half(half) -> str:
    """`half` if it is one of HALVES, else a ValueError naming them (the op's and `symnoise_forward`'s one rule)."""
    if half not in HALVES:
        raise ValueError(f"half must be one of {HALVES}, got {half!r}")
    return half


def triton_available() -> bool:
    return symnoise_triton is not None


def _triton_interpreting() -> bool:
    return triton is not None and triton.knobs.runtime.interpret


def triton_runs_on(device: torch.device | str) -> bool:
    """Whether backend="triton" can run on tensors of `device`: CUDA with Triton installed, or its CPU interpreter."""
    return triton_available() and (torch.device(device).type == "cuda" or _triton_interpreting())


# NOTE: cudagraph_unsafe: the op reads its seed on the host at each call, so a captured CUDA graph would replay the
# seed of the capture (the same noise every step); Inductor leaves tagged ops out of its CUDA graphs.
_TAGS = (torch.Tag.cudagraph_unsafe,) if hasattr(torch.Tag, "cudagraph_unsafe") else ()


@torch.library.custom_op("symnoise_trl::symnoise", mutates_args=(), tags=_TAGS)
def _symnoise_op(
    x: torch.Tensor,
    scale: torch.Tensor | None,
    scale_value: float,
    seed: torch.Tensor,
    half: str,
    backend: str,
    check_scale: bool,
    seed_to_check: bool,
    dim: int = 0,
) -> torch.Tensor:
    """The op on checked arguments (see `symnoise_unchecked`). `check_scale` / `seed_to_check`: the values of a
    caller's tensors are still to be checked, here where reading them needs no tracing (under torch.compile the
    public entry is traced)."""
    # NOTE: the seed arrives as a CPU tensor, so torch.compile sees a graph input rather than a Python int to guard
    # on (a new seed every step recompiled the graph every step); reading a CPU tensor costs no device sync.
    seed_value = check_seed(int(seed)) if seed_to_check else int(seed)
    # NOTE: one device->host sync per call, so scale values are checked only for a caller's `check_scale=True`.
    if check_scale and scale is not None and not bool(((scale >= 0) & torch.isfinite(scale)).all()):
        raise ValueError("scale must be finite and >= 0 on every row")
    backend_fn = symnoise_triton if backend == "triton" else symnoise_torch
    x2d = x.reshape(_n_rows(x), x.shape[-1]).contiguous()
    return backend_fn(x2d, scale, scale_value, seed_value, half, out_shape=_out_shape(x, half, dim))


@_symnoise_op.register_fake
def _(x, scale, scale_value, seed, half, backend, check_scale, seed_to_check, dim=0):
    return x.new_empty(_out_shape(x, half, dim))


def _out_shape(x: torch.Tensor, half: str, dim: int) -> tuple[int, ...]:
    """x's shape, with `dim` doubled for half="both" (the copies one after the other, as in stack's memory)."""
    if not 0 <= dim < x.dim() or math.prod(x.shape[:dim]) != 1:
        raise ValueError(f"dim must index a dimension of x before which every size is 1, got {dim} for {x.shape}")
    shape = list(x.shape)
    if half == "both":
        shape[dim] *= 2
    return tuple(shape)


def _setup_context(ctx, inputs, output):
    ctx.half, ctx.x_shape = inputs[4], inputs[0].shape


def _backward(ctx, grad):
    # d(x + s*eps)/dx = d(x - s*eps)/dx = I: no RNG, nothing saved.
    if ctx.half == "both":
        copies = grad.reshape((2, *ctx.x_shape))
        return copies[0] + copies[1], None, None, None, None, None, None, None, None
    return grad, None, None, None, None, None, None, None, None


_symnoise_op.register_autograd(_backward, setup_context=_setup_context)


def _n_rows(x: torch.Tensor) -> int:
    return math.prod(x.shape[:-1])


def symnoise_unchecked(
    x: torch.Tensor, scale: torch.Tensor, seed: torch.Tensor, half: str = "both", backend: str = "auto", dim: int = 0
) -> torch.Tensor:
    """The op for callers whose arguments are valid by construction (the trainer's noise plan): nothing is checked.

    `x` a float tensor (..., d); `scale` fp32 with one value per row, finite (a negative value gives the other half:
    see `symnoise`'s `check_scale`); `seed` a 0-d int64 CPU tensor in [0, 2**63); `half` one of HALVES; `backend`
    one of BACKENDS, where "triton" can run on x's device. Returns x's shape, with `dim` doubled for half="both":
    the two copies one after the other along `dim` (every size before it 1; see the module's docstring).
    """
    return _symnoise_op(x, scale.reshape(-1), 0.0, seed, half, _chosen_backend(backend, x), False, False, dim)


def _chosen_backend(backend: str, x: torch.Tensor) -> str:
    """What "auto" means for `x`: Triton on CUDA tensors when importable, else torch."""
    if backend != "auto":
        return backend
    return "triton" if x.is_cuda and triton_available() else "torch"


# The public entry: every argument checked and converted here, once.


def _check_x(x) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in DTYPES:
        raise TypeError(f"x must be float32, float16 or bfloat16, got {x.dtype}")
    if x.dim() == 0:
        raise ValueError("x must have shape (..., d) with at least one dimension, got a 0-d tensor")
    if _n_rows(x) > MAX_ROWS:
        raise ValueError("x has more than 2**32 rows (the row is a 32-bit Philox counter)")


def _scale_arg(scale, x: torch.Tensor) -> tuple[torch.Tensor | None, float]:
    """(per-row fp32 tensor or None, scalar value) from a Python number or a tensor with one value per row."""
    if isinstance(scale, torch.Tensor):
        if not scale.is_floating_point():
            raise TypeError(f"scale must be a float or a floating-point tensor, got a {scale.dtype} tensor")
        n_rows = _n_rows(x)
        if scale.shape != x.shape[:-1] and tuple(scale.shape) != (n_rows,):
            raise ValueError(
                f"scale must be a float or a tensor of shape x.shape[:-1] = {tuple(x.shape[:-1])} or (N,) = "
                f"({n_rows},), got shape {tuple(scale.shape)}"
            )
        if scale.device != x.device:
            raise ValueError(f"scale must be on x's device {x.device}, got {scale.device}")
        return scale.detach().reshape(-1).to(torch.float32).contiguous(), 0.0
    if isinstance(scale, bool) or not isinstance(scale, Real):
        raise TypeError(f"scale must be a float or a floating-point tensor, got {type(scale).__name__}")
    if not (math.isfinite(scale) and scale >= 0):
        raise ValueError(f"scale must be finite and >= 0, got {scale}")
    return None, float(scale)


def _seed_arg(seed) -> tuple[torch.Tensor, bool]:
    """(the seed as the 0-d int64 CPU tensor the op takes, whether its value is still to be checked): an int is
    checked here, a tensor's value inside the op."""
    if isinstance(seed, torch.Tensor):
        if seed.dtype != torch.int64 or seed.numel() != 1 or seed.device.type != "cpu":
            raise TypeError(
                "seed must be an int in [0, 2**63) or a one-element int64 CPU tensor holding one, got a "
                f"{seed.dtype} tensor of shape {tuple(seed.shape)} on {seed.device}"
            )
        return seed.reshape(()), True
    return torch.tensor(check_seed(seed), dtype=torch.int64, device="cpu"), False


def _backend_arg(backend: str, x: torch.Tensor) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "triton" and not triton_available():
        raise ValueError("backend='triton' needs the triton package, which is not importable; use 'torch'")
    if backend == "triton" and not triton_runs_on(x.device):
        raise ValueError(
            f"backend='triton' needs a CUDA tensor (or TRITON_INTERPRET=1 for CPU tensors), got device {x.device}"
        )
    return _chosen_backend(backend, x)


def symnoise(
    x: torch.Tensor,
    scale,
    seed: int | torch.Tensor,
    *,
    half: str = "both",
    backend: str = "auto",
    check_scale: bool = True,
) -> torch.Tensor:
    """Symmetric Rademacher noise on embeddings (SymNoise, arXiv 2312.01523, Algorithm 2), in one pass.

    Args:
        x: float32/float16/bfloat16 tensor of shape (..., d), read as N rows of d.
        scale: a float, or a float tensor with one value per row (shape x.shape[:-1] or (N,)); >= 0.
            A row with scale 0 comes back unchanged (padding).
        seed: int in [0, 2**63), or a one-element int64 CPU tensor holding one; the signs are a pure function of
            (seed, row, column). Under torch.compile pass a tensor: a Python int is a constant of the graph, and a
            new one recompiles it.
        half: "both" returns (2, *x.shape) with [0] = x + scale*eps and [1] = x - scale*eps;
            "plus" / "minus" return that half alone, shape x.shape (the second one regenerates the same signs).
        backend: "triton", "torch" (pure torch, any device) or "auto" (Triton on CUDA when importable, else torch).
            Both give bit-identical results.
        check_scale: check that a scale tensor is finite and >= 0 on every row. The check reads the values back to
            the host (a device sync); callers whose scales are valid by construction pass False. Unchecked, a
            negative row scale -s gives x - s*eps in the plus half (the minus half of s, bit for bit): the trainer's
            two-pass mode draws its minus pass so, from one compiled graph.

    Arithmetic is fp32 with one round-to-nearest-even store to x.dtype; a NaN is written as the dtype's canonical
    quiet NaN (GPU and CPU arithmetic disagree on NaN bits). The gradient w.r.t. x is grad[0] + grad[1] ("both")
    or grad (one half); scale and seed get none.
    """
    _check_x(x)
    scale_rows, scale_value = _scale_arg(scale, x)
    seed, seed_to_check = _seed_arg(seed)
    check_half(half)
    backend = _backend_arg(backend, x)
    out = _symnoise_op(x, scale_rows, scale_value, seed, half, backend, bool(check_scale), seed_to_check)
    return out.view(2, *x.shape) if half == "both" else out
