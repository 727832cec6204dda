"""Noise: the one-sided noises of the paper's ablation, RMS-matched to SymNoise at the same alpha.

Per element, with s = alpha / sqrt(3 * L * d) (the RMS of every distribution here):
  rademacher  X + s * eps, eps = +-1 signs (the paper's "Bernoulli"), from the SymNoise op's stream (half="plus")
  uniform     X + U(-sqrt(3) s, sqrt(3) s) = U(-alpha / sqrt(L d), +alpha / sqrt(L d)): NEFTune exactly
  gaussian    X + N(0, s^2): sigma = alpha / sqrt(3 L d) (the paper's "Gaussian alpha / sqrt(3)")
Only SymNoise ("symmetric", the op itself) trains on two copies; these keep the batch as it is.
"""

import math

import torch

from ..kernels.reference import rademacher_signs
from ..kernels.symnoise_op import symnoise_unchecked


def _unit_uniform(shape, generator, device) -> torch.Tensor:
    return (torch.rand(shape, generator=generator, device=device) * 2 - 1) * math.sqrt(3)  # RMS 1


def _unit_gaussian(shape, generator, device) -> torch.Tensor:
    return torch.randn(shape, generator=generator, device=device)


_UNIT_NOISE = {"uniform": _unit_uniform, "gaussian": _unit_gaussian}
ONE_SIDED = ("rademacher", *_UNIT_NOISE)


def _drawn(distribution: str, shape, seed: int, device: torch.device) -> torch.Tensor:
    """The uniform or Gaussian noise at RMS 1 for `seed`, from a generator of its own on `device`."""
    generator = torch.Generator(device=device).manual_seed(seed)
    return _UNIT_NOISE[distribution](shape, generator, device)


def unit_noise(distribution: str, n_rows: int, dim: int, seed: int, device=None) -> torch.Tensor:
    """The noise of `distribution` (one of ONE_SIDED) for `seed` at RMS 1, an fp32 (n_rows, dim) tensor: what
    `one_sided_noise` adds to rows of width `dim` at scale 1 (the research harness's fixed directions)."""
    if distribution == "rademacher":
        return rademacher_signs(n_rows, dim, seed, device).float()
    return _drawn(distribution, (n_rows, dim), seed, torch.device(device or "cpu"))


def one_sided_noise(
    x: torch.Tensor, scale: torch.Tensor, seed: torch.Tensor, distribution: str, backend: str = "auto"
) -> torch.Tensor:
    """x + noise of `distribution` (one of ONE_SIDED) with per-row RMS `scale` (fp32, shape x.shape[:-1]); rows with
    scale 0 unchanged. `seed` is a 0-d int64 CPU tensor. The arguments are taken as checked (`SymNoiseSettings`)."""
    if distribution == "rademacher":
        return symnoise_unchecked(x, scale, seed, half="plus", backend=backend)
    unit = _drawn(distribution, x.shape, int(seed), x.device)
    return (x.float() + unit * scale[..., None]).to(x.dtype)
