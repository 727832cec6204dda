"""The Triton kernel (under TRITON_INTERPRET=1) against the torch reference, bit for bit."""

import pytest
import torch

from symnoise_trl.kernels import symnoise
from symnoise_trl.kernels.reference import CANONICAL_NAN_BITS, symnoise_reference
from symnoise_trl.kernels.symnoise_op import symnoise_unchecked

pytest.importorskip("triton")  # a CPU-only torch brings none (the dev extra installs it)
from symnoise_trl.kernels.symnoise_triton import default_config, symnoise_triton  # noqa: E402

from helpers.kernel_cases import DTYPES, SEED, assert_bit_equal, bits, matrix_inputs, row_scales


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("half", ["both", "plus", "minus"])
@pytest.mark.parametrize("per_row", [False, True], ids=["scalar_scale", "row_scale"])
def test_triton_equals_reference(dtype, half, per_row):
    for x in matrix_inputs(dtype):
        scale = row_scales(x.shape[0]) if per_row else 0.37
        got = symnoise(x, scale, SEED, half=half, backend="triton")
        want = symnoise(x, scale, SEED, half=half, backend="torch")
        assert got.shape == ((2,) if half == "both" else ()) + tuple(x.shape)
        assert_bit_equal(got, want)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_output_does_not_depend_on_block_config(dtype):
    n_rows, dim = 37, 700
    x = torch.randn(n_rows, dim).to(dtype)
    scale = row_scales(n_rows)
    want = symnoise_reference(x, scale, SEED, "both")
    assert default_config(n_rows, dim) not in [(1, 1, 1), (16, 2, 4)]
    for config in [None, (1, 1, 1), (16, 2, 4)]:
        assert_bit_equal(symnoise_triton(x, scale, 0.0, SEED, "both", config=config), want)


def test_non_contiguous_and_batched_input():
    base = torch.randn(4, 9, 2 * 96, dtype=torch.bfloat16)
    x = base[..., ::2]  # (4, 9, 96), stride 2 on the last dim
    assert not x.is_contiguous()
    scale = torch.rand(4, 9)  # one value per (batch, position)
    got = symnoise(x, scale, 3, backend="triton")
    assert got.shape == (2, 4, 9, 96)
    assert_bit_equal(got, symnoise(x.contiguous(), scale, 3, backend="torch"))
    assert_bit_equal(got, symnoise(x.contiguous(), scale.reshape(-1), 3, backend="triton"))


def test_zero_scale_rows_are_returned_bit_for_bit():
    x = torch.randn(6, 130)
    x[1] = -0.0
    x[2, :5] = float("nan")  # torch's NaN is the canonical one: kept as it is
    scale = torch.tensor([0.1, 0.0, 0.0, 0.2, 0.0, 0.3])
    out = symnoise(x, scale, 9, backend="triton")
    for n in (1, 2, 4):
        assert torch.equal(bits(out[0, n]), bits(x[n])) and torch.equal(bits(out[1, n]), bits(x[n]))
    assert not torch.equal(out[0, 0], x[0])


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_nan_is_written_as_one_pattern(dtype):
    payloads = torch.tensor([0x7FC00000, 0xFFC00001 - 2**32, 0x7FA00000, 0xFFFFFFFF - 2**32], dtype=torch.int32)
    x = payloads.view(torch.float32).repeat(3, 1).to(dtype)
    for backend in ("triton", "torch"):
        out = symnoise(x, torch.tensor([0.5, 0.0, 0.25]), 3, backend=backend)
        assert (bits(out) == CANONICAL_NAN_BITS[dtype]).all(), backend


@pytest.mark.parametrize("shape", [(0, 64), (5, 0), (2, 0, 8)])
@pytest.mark.parametrize("backend", ["triton", "torch"])
def test_empty_input_gives_empty_output(shape, backend):
    x = torch.empty(shape, dtype=torch.float16)
    assert symnoise(x, 0.5, 1, backend=backend).shape == (2, *shape)
    assert symnoise(x, 0.5, 1, half="minus", backend=backend).shape == shape


def test_seed_extremes_and_large_row_counters():
    x = torch.randn(3, 260)
    for seed in (0, 1, 2**32 - 1, 2**32, 2**63 - 1):
        assert_bit_equal(symnoise(x, 0.2, seed, backend="triton"), symnoise(x, 0.2, seed, backend="torch"))
    # Rows past 2**16 exercise the upper bytes of the row counter (tall blocks keep the interpreter quick).
    x = torch.randn(70_000, 3)
    got = symnoise_triton(x, None, 0.2, 5, "both", config=(4096, 1, 4))
    assert_bit_equal(got, symnoise(x, 0.2, 5, backend="torch"))


def test_half_outputs_are_the_two_halves_of_both():
    x = torch.randn(5, 300, dtype=torch.bfloat16)
    both = symnoise(x, 0.3, 11, backend="triton")
    assert_bit_equal(symnoise(x, 0.3, 11, half="plus", backend="triton"), both[0])
    assert_bit_equal(symnoise(x, 0.3, 11, half="minus", backend="triton"), both[1])


@pytest.mark.parametrize("backend", ["triton", "torch"])
def test_unchecked_op_lays_the_copies_out_along_dim_as_the_doubled_batch(backend):
    # The trainer's plan takes the op's output as the doubled batch itself: (2B, T, d) for a padded batch, (1, 2T, d)
    # for a packed row, allocated in that shape (no copy, and not a view for torch.compile to guard on).
    seed = torch.tensor(9)
    padded, packed = torch.randn(3, 5, 40), torch.randn(1, 7, 40)
    for x, dim in ((padded, 0), (packed, 1)):
        scale = torch.full((x.shape[0] * x.shape[1],), 0.4)
        out = symnoise_unchecked(x, scale, seed, "both", backend, dim=dim)
        assert out._base is None
        assert_bit_equal(out, torch.cat(list(symnoise(x, scale.view(x.shape[:-1]), seed, backend=backend)), dim=dim))
        one = symnoise_unchecked(x, -scale, seed, "plus", backend, dim=dim)
        assert one._base is None and one.shape == x.shape
        assert_bit_equal(one, out.narrow(dim, x.shape[dim], x.shape[dim]))
    with pytest.raises(ValueError, match=r"^dim must index a dimension of x before which every size is 1, got 1"):
        symnoise_unchecked(padded, torch.full((15,), 0.4), seed, "both", backend, dim=1)


def test_gradient_of_the_doubled_layout_is_the_sum_of_its_copies():
    x = torch.randn(1, 6, 16, requires_grad=True)
    out = symnoise_unchecked(x, torch.full((6,), 0.2), torch.tensor(3), "both", "torch", dim=1)
    grad = torch.randn_like(out)
    (got,) = torch.autograd.grad(out, x, grad)
    assert_bit_equal(got, grad[:, :6] + grad[:, 6:])
