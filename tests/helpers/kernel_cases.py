"""Inputs and bitwise comparison shared by the op's tests (the Triton kernel, the torch backend, the GPU tests)."""

import torch

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
DIMS = [1, 31, 100, 128, 200, 576, 4096]
ROWS = [1, 7, 64]
SEED = 12_345_678_901  # above 2**32: both key words in play


def bits(t: torch.Tensor) -> torch.Tensor:
    """Integer view, so that equality is bitwise (NaN payloads, -0.0)."""
    return t.view({4: torch.int32, 2: torch.int16}[t.element_size()])


def assert_bit_equal(a: torch.Tensor, b: torch.Tensor):
    assert a.shape == b.shape and a.dtype == b.dtype
    assert torch.equal(bits(a), bits(b))


def matrix_inputs(dtype: torch.dtype, seed: int = 0):
    """The kernel tests' inputs: an (n_rows, dim) x for every dim in DIMS and n_rows in ROWS, its first row starting
    with -0.0, NaN and -inf."""
    gen = torch.Generator().manual_seed(seed)
    for dim in DIMS:
        for n_rows in ROWS:
            x = torch.randn(n_rows, dim, generator=gen).to(dtype)
            x[0, : min(dim, 3)] = torch.tensor([-0.0, float("nan"), float("-inf")])[: min(dim, 3)].to(dtype)
            yield x


def row_scales(n_rows: int) -> torch.Tensor:
    scale = torch.rand(n_rows, generator=torch.Generator().manual_seed(n_rows)) * 0.5
    scale[::3] = 0.0  # padding rows
    return scale
