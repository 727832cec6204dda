"""Noise: `SymNoiseSettings`, every setting of a SymNoise run and every rule of how they combine, checked when built.

Built from a trainer's `symnoise_*` fields (`trainers/arguments.py`, once per `train()`), from an Axolotl YAML file's
(`integrations/axolotl.py`, through the same function), or from `activate_symnoise`'s arguments. Building it writes
nothing anywhere; the hook, the noise plan, the op, the trainers and the model card take its values as checked.
"""

import math
from dataclasses import dataclass
from numbers import Integral, Real

from ..kernels.reference import check_seed
from ..kernels.symnoise_op import BACKENDS
from .one_sided import ONE_SIDED

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
    """The settings of a SymNoise run.

    Args:
        alpha: noise strength, read like NEFTune's alpha: s = alpha / sqrt(3 * L * d). 0 doubles the batch without
            noise (reproduces plain training: a diagnostic).
        length: "sequence" (L = each sequence's real length, no noise on padding) or "padded" (L = the padded length,
            noise everywhere, like transformers' NEFTune hook).
        distribution: "symmetric" (SymNoise: two copies), or a one-sided noise for ablations, RMS-matched at the same
            alpha: "rademacher", "uniform" (NEFTune), "gaussian" (see `symnoise_trl.noise.one_sided`).
        backend: "auto", "triton" or "torch" (see `symnoise_trl.kernels.symnoise`).
        seed: the base seed of the noise, an int in [0, 2**63); None: the run's own seed (`base_seed`).
        two_pass: a trainer's memory-neutral mode: two passes of the batch, one per copy (needs "symmetric").
        clean_loss_steps: a trainer logs the loss without noise every N optimizer steps; 0: never.
    """

    alpha: float
    length: str = "sequence"
    distribution: str = "symmetric"
    backend: str = "auto"
    seed: int | None = None
    two_pass: bool = False
    clean_loss_steps: int = 0

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
        if self.seed is not None:
            try:
                object.__setattr__(self, "seed", check_seed(self.seed))  # the op's rule: a numpy integer is an int
            except (TypeError, ValueError):
                raise SettingError(
                    "seed", f"must be an int in [0, 2**63) or None (to use `seed`), got {self.seed!r}"
                ) from None
        steps = self.clean_loss_steps
        if isinstance(steps, bool) or not isinstance(steps, Integral) or steps < 0:
            raise SettingError(
                "clean_loss_steps", f"must be an int >= 0 (0: off; N: every N optimizer steps), got {steps!r}"
            )
        object.__setattr__(self, "clean_loss_steps", int(steps))
        if self.two_pass and not self.symmetric:
            raise SettingError(
                "two_pass",
                f"splits the two SymNoise copies; it needs the 'symmetric' distribution, got {self.distribution!r}",
            )

    @property
    def symmetric(self) -> bool:
        """Whether the noise is SymNoise's two copies (the batch is doubled), not a one-sided ablation noise."""
        return self.distribution == "symmetric"

    def base_seed(self, run_seed: int) -> int:
        """The seed the noise derives from: `seed`, or the run's `run_seed` when it is None."""
        return run_seed if self.seed is None else self.seed
