"""Trainers: `SymNoiseSFTConfig`, TRL's `SFTConfig` plus the `symnoise_*` fields."""

from dataclasses import dataclass

from trl import SFTConfig

from .arguments import SymNoiseArguments


@dataclass
class SymNoiseSFTConfig(SymNoiseArguments, SFTConfig):
    """Configuration class for [`SymNoiseSFTTrainer`]: every field of [`~trl.SFTConfig`], plus the `symnoise_*` fields
    of [`SymNoiseArguments`] (`symnoise_alpha`, `symnoise_length`, `symnoise_seed`, `symnoise_backend`,
    `symnoise_distribution`, `symnoise_two_pass`)."""
