"""symnoise-trl: SymNoise (symmetric Rademacher noisy embeddings, arXiv 2312.01523) for TRL fine-tuning.

The public API is imported lazily, so `symnoise_trl.kernels` does not pull in transformers and TRL. The layers, each
importing only from those before it (docs/architecture.md): `kernels` (the op), the core modules here,
`integrations` (other frameworks' plugins: Axolotl), `quickstart` (offline model and data), `cli`, `research`
(evaluation, ablation).
"""

import importlib

__version__ = "0.1.0"

_LAZY = {
    "SymNoiseSFTConfig": "sft_config",
    "SymNoiseSFTTrainer": "sft_trainer",
    "SymNoiseArguments": "training_args",
    "SymNoiseTrainingArguments": "training_args",
    "SymNoiseMixin": "mixin",
    "add_symnoise": "mixin",
    "SymNoiseTrainer": "trainer",
    "activate_symnoise": "hooks",
    "active_symnoise_hook": "hooks",
    "deactivate_symnoise": "hooks",
    "symnoise_forward": "hooks",
    "SymNoiseHook": "hooks",
    "SymNoiseSettings": "noise_settings",
    "MicroBatchSeeds": "seeds",
}
__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
