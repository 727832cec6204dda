"""`SymNoiseSFTConfig`: TRL's `SFTConfig` plus the SymNoise fields."""

import math
from dataclasses import dataclass, field

from trl import SFTConfig

from .batch import LENGTH_MODES
from .kernels.symnoise_op import BACKENDS
from .noise import DISTRIBUTIONS


@dataclass
class SymNoiseSFTConfig(SFTConfig):
    r"""
    Configuration class for [`SymNoiseSFTTrainer`]: every field of [`~trl.SFTConfig`], plus the ones below.

    Parameters:
        symnoise_alpha (`float` or `None`, *optional*, defaults to `None`):
            SymNoise strength, read like `neftune_noise_alpha` (the papers use 5, 10, 15). Each training micro-batch
            is replaced by the doubled batch `[X + s*eps, X - s*eps]`, with `eps` Rademacher signs and
            `s = alpha / sqrt(3 * L * d)`. `None` turns SymNoise off; `0` doubles the batch without noise (a
            diagnostic that reproduces plain SFT).
        symnoise_length (`str`, *optional*, defaults to `"sequence"`):
            What `L` is: `"sequence"`, each sequence's number of real tokens, with no noise on padding (NEFTune's
            own training code; correct under packing); `"padded"`, the padded length of the batch, noise on every
            position (transformers' NEFTune hook).
        symnoise_seed (`int` or `None`, *optional*, defaults to `None`):
            Base seed of the noise; `None` uses `seed`. Each micro-batch draws from a hash of (base seed, global
            step, micro-step, data-parallel rank): a resumed run draws the noise of an uninterrupted one.
        symnoise_backend (`str`, *optional*, defaults to `"auto"`):
            Implementation of the noise op: `"triton"` (the fused kernel), `"torch"` (the reference) or `"auto"`
            (Triton on CUDA, else torch). Both give the same bits.
        symnoise_distribution (`str`, *optional*, defaults to `"symmetric"`):
            `"symmetric"` is SymNoise (Algorithm 2, two copies). For the paper's ablations, one-sided noises that keep
            the batch, RMS-matched at the same alpha (per-element RMS alpha / sqrt(3 L d)): `"rademacher"` (+-1,
            the paper's "Bernoulli"), `"uniform"` (NEFTune exactly), `"gaussian"` (sigma alpha / sqrt(3 L d)).
        symnoise_two_pass (`bool`, *optional*, defaults to `False`):
            Memory-neutral mode: instead of one pass over the doubled batch, two forward/backward passes over the
            original batch, `X + s*eps` then `X - s*eps` (same seed, each loss weighted 1/2). Same gradients, the
            activation memory of plain SFT, about the same compute. The first pass does not all-reduce under DDP.
            Not supported with DeepSpeed.
    """

    symnoise_alpha: float | None = field(
        default=None,
        metadata={
            "help": "SymNoise strength, read like `neftune_noise_alpha` (papers: 5, 10, 15): each micro-batch is "
            "trained as [X + s*eps, X - s*eps] with Rademacher eps and s = alpha / sqrt(3 * L * d). `None` turns "
            "SymNoise off; 0 doubles the batch without noise."
        },
    )
    symnoise_length: str = field(
        default="sequence",
        metadata={
            "help": "What L is in the noise scale: 'sequence' (each sequence's real length, no noise on padding) or "
            "'padded' (the padded batch length, like transformers' NEFTune hook).",
            "choices": list(LENGTH_MODES),
        },
    )
    symnoise_seed: int | None = field(
        default=None,
        metadata={
            "help": "Base seed of the SymNoise noise; defaults to `seed`. Per micro-batch, the seed is a hash of "
            "(base seed, global step, micro-step, data-parallel rank)."
        },
    )
    symnoise_backend: str = field(
        default="auto",
        metadata={
            "help": "SymNoise op implementation: 'triton' (fused kernel), 'torch' (reference) or 'auto' (Triton on "
            "CUDA, else torch). Both give bit-identical noise.",
            "choices": list(BACKENDS),
        },
    )
    symnoise_distribution: str = field(
        default="symmetric",
        metadata={
            "help": "'symmetric' is SymNoise (two copies). Ablations, one-sided and RMS-matched at the same alpha: "
            "'rademacher' (+-1 noise, the paper's Bernoulli), 'uniform' (NEFTune), 'gaussian'.",
            "choices": list(DISTRIBUTIONS),
        },
    )
    symnoise_two_pass: bool = field(
        default=False,
        metadata={
            "help": "Memory-neutral SymNoise: two forward/backward passes of the original batch size (X + s*eps, then "
            "X - s*eps, each loss weighted 1/2) instead of one pass over the doubled batch. Same gradients, the "
            "activation memory of plain SFT. Not supported with DeepSpeed."
        },
    )

    def __post_init__(self):
        alpha = self.symnoise_alpha
        if alpha is not None:
            if isinstance(alpha, bool) or not isinstance(alpha, int | float):
                raise ValueError(f"`symnoise_alpha` must be a number >= 0 or None, got {alpha!r}")
            if not (math.isfinite(alpha) and alpha >= 0):
                raise ValueError(
                    f"`symnoise_alpha` must be finite and >= 0 (or None to turn SymNoise off), got {alpha}"
                )
            if self.neftune_noise_alpha is not None:
                raise ValueError(
                    f"`symnoise_alpha` ({alpha}) and `neftune_noise_alpha` ({self.neftune_noise_alpha}) are both set; "
                    "choose one: NEFTune's hook would add its noise to both SymNoise halves."
                )
        for name, choices in (
            ("symnoise_length", LENGTH_MODES),
            ("symnoise_backend", BACKENDS),
            ("symnoise_distribution", DISTRIBUTIONS),
        ):
            if getattr(self, name) not in choices:
                raise ValueError(f"`{name}` must be one of {choices}, got {getattr(self, name)!r}")
        if self.symnoise_two_pass and self.symnoise_distribution != "symmetric":
            raise ValueError(
                "`symnoise_two_pass` splits the two SymNoise copies; it needs `symnoise_distribution='symmetric'`, "
                f"got {self.symnoise_distribution!r}"
            )
        seed = self.symnoise_seed
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
            raise ValueError(f"`symnoise_seed` must be an int >= 0 or None (to use `seed`), got {seed!r}")
        super().__post_init__()
