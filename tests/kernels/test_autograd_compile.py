"""Autograd against an eager PyTorch Algorithm 2 with the same signs; torch.compile and torch.library checks."""

import pytest
import torch

from symnoise_trl.kernels import rademacher, symnoise


def eager_algorithm2(x: torch.Tensor, scale: float, seed: int) -> torch.Tensor:
    """The paper's Algorithm 2 written plainly: materialise the signs, add, subtract, stack."""
    eps = rademacher(x.numel() // x.shape[-1], x.shape[-1], seed).reshape(x.shape).to(x.dtype)
    return torch.stack([x + scale * eps, x - scale * eps])


@pytest.mark.parametrize("backend", ["triton", "torch"])
def test_forward_and_backward_match_eager_algorithm2(backend):
    x = torch.randn(3, 5, 200, requires_grad=True)
    x_eager = x.detach().clone().requires_grad_(True)
    weights = torch.randn(2, 3, 5, 200)

    out = symnoise(x, 0.25, 42, backend=backend)
    expected = eager_algorithm2(x_eager, 0.25, 42)
    assert torch.equal(out, expected)

    (out * weights).sum().backward()
    (expected * weights).sum().backward()
    assert torch.equal(x.grad, x_eager.grad)
    assert torch.equal(x.grad, weights[0] + weights[1])


@pytest.mark.parametrize("half", ["plus", "minus"])
def test_backward_of_one_half_is_the_identity(half):
    x = torch.randn(4, 130, dtype=torch.bfloat16, requires_grad=True)
    g = torch.randn(4, 130, dtype=torch.bfloat16)
    symnoise(x, 0.1, 3, half=half).backward(g)
    assert torch.equal(x.grad, g)


def test_no_gradient_flows_to_scale():
    x = torch.randn(4, 64, requires_grad=True)
    scale = torch.full((4,), 0.1, requires_grad=True)
    symnoise(x, scale, 3).sum().backward()
    assert scale.grad is None and x.grad is not None


def test_torch_library_opcheck():
    x = torch.randn(3, 140, requires_grad=True)
    seed = torch.tensor(5)
    # The registered op: (x, scale rows, scale value, seed, half, backend, check_scale, check_seed).
    for args in [(x, None, 0.3, seed, "both", "torch", True, True),
                 (x, torch.rand(3), 0.0, seed, "minus", "torch", True, False),
                 (x, -torch.rand(3), 0.0, seed, "plus", "torch", False, False)]:  # fmt: skip
        torch.library.opcheck(torch.ops.symnoise_trl.symnoise.default, args)


def test_torch_compile_fullgraph_matches_eager():
    def noisy_sum(x, scale):
        y = symnoise(x * 2, scale, 1234)
        return (y[0] * y[1]).sum(-1)

    x = torch.randn(2, 6, 160, requires_grad=True)
    scale = torch.rand(2, 6)
    compiled = torch.compile(noisy_sum, fullgraph=True)
    eager_out = noisy_sum(x, scale)
    (eager_grad,) = torch.autograd.grad(eager_out.sum(), x)
    compiled_out = compiled(x, scale)
    (compiled_grad,) = torch.autograd.grad(compiled_out.sum(), x)
    torch.testing.assert_close(compiled_out, eager_out)
    torch.testing.assert_close(compiled_grad, eager_grad)
