"""Core: `SymNoiseSettings`, the noise a SymNoise hook applies (alpha, L, distribution, backend), checked when built.

Built from the `symnoise_*` fields of a trainer's arguments (`training_args.py`) or from `activate_symnoise`'s
arguments (`hooks.py`); the hook, the noise plan and the op take its values as checked.
"""

import math
from dataclasses import dataclass
from numbers import Real

from .kernels.symnoise_op import BACKENDS
from .one_sided_noise import ONE_SIDED

# What L is in s = alpha / sqrt(3 L d): each sequence's real length, or the padded length of the batch.
LENGTH_MODES = ("sequence", "padded")
# SymNoise itself, then the one-sided noises of the paper's ablation.
DISTRIBUTIONS = ("symmetric", *ONE_SIDED)


class SettingError(ValueError):
    """A bad SymNoise setting. `setting` is its name, `problem` says what is allowed, so that a caller with other
    names for the settings (the config's `symnoise_*` fields) can name them its own way."""

    def __init__(self, setting: str, problem: str):
        self.setting, self.problem = setting, problem
        super().__init__(f"`{setting}` {problem}")


@dataclass(frozen=True)
class SymNoiseSettings:
    """The noise of a SymNoise run.

    Args:
        alpha: noise strength, read like NEFTune's alpha: s = alpha / sqrt(3 * L * d). 0 doubles the batch without
            noise (reproduces plain training: a diagnostic).
        length: "sequence" (L = each sequence's real length, no noise on padding) or "padded" (L = the padded length,
            noise everywhere, like transformers' NEFTune hook).
        distribution: "symmetric" (SymNoise: two copies), or a one-sided noise for ablations, RMS-matched at the same
            alpha: "rademacher", "uniform" (NEFTune), "gaussian" (see `symnoise_trl.one_sided_noise`).
        backend: "auto", "triton" or "torch" (see `symnoise_trl.kernels.symnoise`).
    """

    alpha: float
    length: str = "sequence"
    distribution: str = "symmetric"
    backend: str = "auto"

    def __post_init__(self):
        alpha = self.alpha
        if isinstance(alpha, bool) or not isinstance(alpha, Real):
            raise SettingError("alpha", f"must be a number >= 0, got {alpha!r}")
        if not (math.isfinite(alpha) and alpha >= 0):
            raise SettingError("alpha", f"must be finite and >= 0, got {alpha}")
        object.__setattr__(self, "alpha", float(alpha))
        for name, choices in (("length", LENGTH_MODES), ("distribution", DISTRIBUTIONS), ("backend", BACKENDS)):
            if getattr(self, name) not in choices:
                raise SettingError(name, f"must be one of {choices}, got {getattr(self, name)!r}")

    @property
    def symmetric(self) -> bool:
        """Whether the noise is SymNoise's two copies (the batch is doubled), not a one-sided ablation noise."""
        return self.distribution == "symmetric"
