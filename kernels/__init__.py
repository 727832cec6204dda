"""Compute core of symnoise-trl: the fused SymNoise Triton kernel and its bit-exact torch reference.

Installed as `symnoise_trl.kernels`; depends on torch (and optionally triton) only.
"""

from .reference import philox4x32, rademacher
from .symnoise_op import symnoise, triton_available

__all__ = ["philox4x32", "rademacher", "symnoise", "triton_available"]
