"""Every bad input of the op's contract (docs/noise-stream.md, section 2) raises at the op's entry, with a message
naming the argument."""

import numpy as np
import pytest
import torch

import symnoise_trl.kernels.symnoise_op as op
from symnoise_trl import SymNoiseSFTConfig
from symnoise_trl.kernels import symnoise

X = torch.randn(2, 3, 8)


@pytest.mark.parametrize(
    "x, match",
    [
        (torch.ones(2, 8, dtype=torch.int64), "x must be float32, float16 or bfloat16"),
        (torch.ones(2, 8, dtype=torch.complex64), "x must be float32, float16 or bfloat16"),
        (torch.ones(2, 8, dtype=torch.float64), "x must be float32, float16 or bfloat16"),
        ([[1.0, 2.0]], "x must be a torch.Tensor"),
    ],
)
def test_bad_x_type(x, match):
    with pytest.raises(TypeError, match=match):
        symnoise(x, 0.1, 0)


def test_zero_dim_x():
    with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., d\)"):
        symnoise(torch.tensor(1.0), 0.1, 0)


@pytest.mark.parametrize(
    "scale, error, match",
    [
        (-0.1, ValueError, "scale must be finite and >= 0"),
        (float("nan"), ValueError, "scale must be finite and >= 0"),
        (float("inf"), ValueError, "scale must be finite and >= 0"),
        (True, TypeError, "scale must be a float"),
        ("0.1", TypeError, "scale must be a float"),
        (torch.ones(2, 3, dtype=torch.int32), TypeError, "scale must be a float or a floating-point tensor"),
        (torch.ones(3, 2), ValueError, r"scale must be .* shape x.shape\[:-1\] = \(2, 3\) or \(N,\) = \(6,\)"),
        (torch.ones(2, 3, 8), ValueError, "got shape"),
        (torch.ones(2, 3, device="meta"), ValueError, "scale must be on x's device"),
        (torch.tensor([[0.1, -0.1, 0.0]] * 2), ValueError, "scale must be finite and >= 0 on every row"),
        (torch.tensor([[0.1, float("nan"), 0.0]] * 2), ValueError, "scale must be finite and >= 0 on every row"),
    ],
)
def test_bad_scale(scale, error, match):
    with pytest.raises(error, match=match):
        symnoise(X, scale, 0)


@pytest.mark.parametrize(
    "seed, error",
    [(-1, ValueError), (2**63, ValueError), (1.0, TypeError), (True, TypeError), (torch.tensor(3.0), TypeError),
     (torch.tensor(3, dtype=torch.int32), TypeError), (torch.tensor([3, 4]), TypeError),
     (torch.tensor(-3), ValueError)],  # a tensor's value is checked inside the op
)  # fmt: skip
def test_bad_seed(seed, error):
    with pytest.raises(error, match=r"seed must be .*\[0, 2\*\*63\)"):
        symnoise(X, 0.1, seed)


def test_seed_tensor_gives_the_int_seed_noise():
    for seed in (0, 7, 2**63 - 1):
        assert torch.equal(symnoise(X, 0.1, torch.tensor(seed)), symnoise(X, 0.1, seed))


def test_unknown_half_and_backend():
    with pytest.raises(ValueError, match=r"half must be one of \('both', 'plus', 'minus'\), got 'neg'"):
        symnoise(X, 0.1, 0, half="neg")
    with pytest.raises(ValueError, match=r"backend must be one of \('auto', 'triton', 'torch'\), got 'cuda'"):
        symnoise(X, 0.1, 0, backend="cuda")


def test_triton_backend_without_triton(monkeypatch):
    monkeypatch.setattr(op, "symnoise_triton", None)
    with pytest.raises(ValueError, match="backend='triton' needs the triton package"):
        symnoise(X, 0.1, 0, backend="triton")
    assert symnoise(X, 0.1, 0).shape == (2, *X.shape)  # "auto" still works


def test_triton_backend_on_cpu_without_interpreter(monkeypatch):
    triton = pytest.importorskip("triton")
    monkeypatch.setattr(triton.knobs.runtime, "interpret", False)  # a CPU without Triton's interpreter
    with pytest.raises(ValueError, match="backend='triton' needs a CUDA tensor"):
        symnoise(X, 0.1, 0, backend="triton")


def test_auto_backend_on_cpu_is_the_torch_backend(monkeypatch):
    def no_triton(*args, **kwargs):
        raise AssertionError("backend='auto' ran Triton on a CPU tensor")

    monkeypatch.setattr(op, "symnoise_triton", no_triton)  # importable, interpreted: still not chosen on a CPU
    assert torch.equal(symnoise(X, 0.1, 0), symnoise(X, 0.1, 0, backend="torch"))


@pytest.mark.parametrize("seed", [np.int64(7), np.uint32(7), np.int64(-1), np.int64(2**62) * 2, 7.0, np.float64(7)])
def test_the_op_and_the_config_take_or_refuse_a_seed_alike(seed):
    # One rule for the seed (kernels.reference.check_seed): a numpy integer in range is an int, anything else is not.
    try:
        out = symnoise(X, 0.1, seed)
    except (TypeError, ValueError):
        with pytest.raises(ValueError, match="`symnoise_seed` must be an int in"):
            SymNoiseSFTConfig(output_dir="out", bf16=False, symnoise_alpha=1.0, symnoise_seed=seed)
        return
    assert torch.equal(out, symnoise(X, 0.1, int(seed)))
    config = SymNoiseSFTConfig(output_dir="out", bf16=False, symnoise_alpha=1.0, symnoise_seed=seed)
    assert config.symnoise_seed == int(seed) and type(config.symnoise_seed) is int


def test_the_triton_launcher_refuses_a_strided_tensor():
    pytest.importorskip("triton")
    from symnoise_trl.kernels.symnoise_triton import symnoise_triton

    x = torch.randn(8, 4)
    with pytest.raises(ValueError, match="symnoise_triton needs a contiguous"):
        symnoise_triton(x.t(), None, 0.1, 0, "both")
