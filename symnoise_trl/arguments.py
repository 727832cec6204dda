"""The SymNoise fields of a trainer's arguments, validated where they enter: `SymNoiseArguments` (mixed into any
`TrainingArguments` subclass) and `SymNoiseTrainingArguments` (transformers' `TrainingArguments` with them)."""

from dataclasses import dataclass, field, fields

from transformers import TrainingArguments

from .kernels.reference import MAX_SEED
from .kernels.symnoise_op import BACKENDS
from .settings import DISTRIBUTIONS, LENGTH_MODES, SettingError, SymNoiseSettings


@dataclass
class SymNoiseArguments:
    r"""
    The SymNoise fields, to mix into a `TrainingArguments` subclass (put it first:
    `class MyArgs(SymNoiseArguments, TrainingArguments)`). They are checked in `__post_init__`; the fields other than
    `symnoise_alpha` need it: setting one while it is `None` (SymNoise off) is an error.

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
            activation memory of plain SFT, the compute of the one-pass mode. The first pass does not all-reduce
            under DDP. Not supported with DeepSpeed.
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
        # The noise fields are checked by SymNoiseSettings, also while SymNoise is off (alpha None): a typo in one of
        # them is an error whether or not alpha is set.
        self._symnoise_settings(0.0 if self.symnoise_alpha is None else self.symnoise_alpha)
        seed = self.symnoise_seed
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < MAX_SEED):
            raise ValueError(f"`symnoise_seed` must be an int in [0, 2**63) or None (to use `seed`), got {seed!r}")
        if self.symnoise_alpha is None:
            # The other symnoise_* fields mean nothing while SymNoise is off: setting one is a forgotten alpha.
            changed = [f.name for f in fields(self)
                       if f.name.startswith("symnoise_") and getattr(self, f.name) != f.default]  # fmt: skip
            if changed:
                raise ValueError(
                    f"{', '.join(f'`{name}`' for name in changed)} set while `symnoise_alpha` is None (SymNoise off): "
                    "set `symnoise_alpha` (e.g. 5) to train with SymNoise, or leave these at their defaults"
                )
        elif self.neftune_noise_alpha is not None:
            raise ValueError(
                f"`symnoise_alpha` ({self.symnoise_alpha}) and `neftune_noise_alpha` ({self.neftune_noise_alpha}) are "
                "both set; choose one: NEFTune's hook would add its noise to both SymNoise halves."
            )
        if self.symnoise_two_pass and self.symnoise_distribution != "symmetric":
            raise ValueError(
                "`symnoise_two_pass` splits the two SymNoise copies; it needs `symnoise_distribution='symmetric'`, "
                f"got {self.symnoise_distribution!r}"
            )
        super().__post_init__()  # the TrainingArguments subclass this is mixed into

    @property
    def symnoise_settings(self) -> SymNoiseSettings | None:
        """The noise this config trains with, or None when SymNoise is off (`symnoise_alpha` None)."""
        return None if self.symnoise_alpha is None else self._symnoise_settings(self.symnoise_alpha)

    def _symnoise_settings(self, alpha) -> SymNoiseSettings:
        try:
            return SymNoiseSettings(alpha=alpha, length=self.symnoise_length, distribution=self.symnoise_distribution,
                                    backend=self.symnoise_backend)  # fmt: skip
        except SettingError as error:  # name the config's field
            raise ValueError(f"`symnoise_{error.setting}` {error.problem}") from None


@dataclass
class SymNoiseTrainingArguments(SymNoiseArguments, TrainingArguments):
    """Arguments of [`SymNoiseTrainer`]: every field of transformers' [`~transformers.TrainingArguments`], plus the
    `symnoise_*` fields of [`SymNoiseArguments`]."""
