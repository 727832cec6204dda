"""Statistical and algebraic properties of the noise, on both backends."""

import math

import pytest
import torch

from symnoise_trl.kernels import rademacher, symnoise

BACKENDS = ["triton", "torch"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_halves_are_exactly_symmetric(backend):
    # Dyadic x and scales make every addition exact in fp32, so the identities must hold bit for bit.
    x = torch.randint(-1000, 1000, (33, 300)).float() / 64
    scale = torch.randint(0, 8, (33,)).float() / 32
    scale[5] = 0.0
    out = symnoise(x, scale, 2024, backend=backend)
    assert torch.equal(out[0] + out[1], 2 * x)
    assert torch.equal((out[0] - x).abs(), scale[:, None].expand_as(x))
    assert torch.equal(out[0] - x, x - out[1])


@pytest.mark.parametrize("backend", BACKENDS)
def test_noise_is_the_scaled_rademacher_signs(backend):
    x = torch.zeros(7, 260)
    out = symnoise(x, 0.5, 99, backend=backend)
    assert torch.equal(out[0], 0.5 * rademacher(7, 260, 99).float())


def test_different_seeds_give_different_signs():
    a, b = rademacher(64, 512, 1), rademacher(64, 512, 2)
    agree = (a == b).float().mean().item()
    assert 0.45 < agree < 0.55


def _within_5_sigma(products: torch.Tensor) -> None:
    # Mean of n independent +-1 products: 0 with standard deviation 1/sqrt(n).
    n = products.numel()
    assert n >= 100_000
    assert abs(products.float().mean().item()) < 5 / math.sqrt(n)


def test_sign_frequency_is_balanced():
    eps = rademacher(1024, 1024, 7)
    assert eps.numel() >= 10**6
    _within_5_sigma(eps)


def test_no_correlation_between_neighbouring_rows():
    eps = rademacher(1025, 1024, 7).to(torch.int32)
    _within_5_sigma(eps[1:] * eps[:-1])


def test_no_correlation_between_neighbouring_chunks():
    eps = rademacher(1024, 1024, 7).to(torch.int32)
    _within_5_sigma(eps[:, 128:] * eps[:, :-128])  # same lane and bit, next Philox counter


def test_no_correlation_between_neighbouring_lanes_and_bits():
    eps = rademacher(1024, 1024, 7).to(torch.int32)
    _within_5_sigma(eps[:, 32:] * eps[:, :-32])  # same bit of the next word
    _within_5_sigma(eps[:, 1:] * eps[:, :-1])  # next bit of the same word


def test_no_correlation_between_seeds():
    _within_5_sigma(rademacher(1024, 1024, 7).to(torch.int32) * rademacher(1024, 1024, 8).to(torch.int32))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_unchecked_negative_scale_is_the_minus_half(backend, dtype):
    # The two-pass mode's minus pass: the plus half with -s, bit for bit the minus half (scale-0 rows included).
    x = torch.randn(9, 300).to(dtype)
    x[2] = -0.0
    scale = torch.rand(9)
    scale[2] = scale[5] = 0.0
    minus = symnoise(x, scale, 31, half="minus", backend=backend)
    signed = symnoise(x, -scale, 31, half="plus", backend=backend, check_scale=False)
    assert torch.equal(signed.view(torch.int16 if dtype == torch.bfloat16 else torch.int32),
                       minus.view(torch.int16 if dtype == torch.bfloat16 else torch.int32))  # fmt: skip
