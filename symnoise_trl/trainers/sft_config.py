"""Trainers: `SymNoiseSFTConfig`, TRL's `SFTConfig` plus the `symnoise_*` fields."""

from dataclasses import dataclass

from trl import SFTConfig

from .arguments import SymNoiseArguments
from .preemption import SaveOnSignalArguments


@dataclass
class SymNoiseSFTConfig(SymNoiseArguments, SaveOnSignalArguments, SFTConfig):
    """Configuration class for [`SymNoiseSFTTrainer`]: every field of [`~trl.SFTConfig`], plus the `symnoise_*` fields
    of [`SymNoiseArguments`] (`symnoise_alpha`, `symnoise_length`, `symnoise_seed`, `symnoise_backend`,
    `symnoise_distribution`, `symnoise_two_pass`, `symnoise_clean_loss_steps`) and `save_on_signal`
    ([`SaveOnSignalArguments`]: a checkpoint at SIGTERM or Ctrl-C)."""
