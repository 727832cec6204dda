"""symnoise-trl: SymNoise (symmetric Rademacher noisy embeddings, arXiv 2312.01523) for TRL fine-tuning.

The public API is imported lazily, so `symnoise_trl.kernels` does not pull in transformers and TRL. The layers, one
folder each, each importing only from those before it (docs/architecture.md): `kernels` (the op), `noise` (the noise
on a batch), `hf` (what SymNoise reads of models and runs), `trainers`, `integrations` (other frameworks' plugins:
Axolotl), `quickstart` (offline model and data), `cli`, `research` (evaluation, ablation).
"""

import importlib

__version__ = "0.1.0"

_LAZY = {
    "SymNoiseSFTConfig": "trainers.sft_config",
    "SymNoiseSFTTrainer": "trainers.sft_trainer",
    "SymNoiseArguments": "trainers.arguments",
    "SymNoiseTrainingArguments": "trainers.arguments",
    "SymNoiseMixin": "trainers.mixin",
    "add_symnoise": "trainers.mixin",
    "SymNoiseTrainer": "trainers.trainer",
    "SaveOnSignalCallback": "trainers.preemption",
    "SaveOnSignalArguments": "trainers.preemption",
    "activate_symnoise": "hf.activation",
    "active_symnoise_hook": "hf.activation",
    "deactivate_symnoise": "hf.activation",
    "symnoise_forward": "hf.activation",
    "SymNoiseHook": "noise.hook",
    "SymNoiseSettings": "noise.settings",
    "MicroBatchSeeds": "noise.seeds",
}
__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
