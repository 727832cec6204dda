"""symnoise-trl: SymNoise (symmetric Rademacher noisy embeddings, arXiv 2312.01523) for TRL fine-tuning.

The TRL integration is imported lazily, so `symnoise_trl.kernels` does not pull in transformers and TRL. The package's
layers, each importing only from those before it: `kernels` (the op), the core modules here (noise, settings, batch,
hooks, data, arguments, mixin, config, trainer), `quickstart` (offline model and data), `cli`, `research`
(evaluation, ablation).
"""

import importlib

__version__ = "0.1.0"

_LAZY = {
    "SymNoiseSFTConfig": "config",
    "SymNoiseSFTTrainer": "trainer",
    "SymNoiseArguments": "arguments",
    "SymNoiseTrainingArguments": "arguments",
    "SymNoiseMixin": "mixin",
    "SymNoiseTrainer": "mixin",
    "activate_symnoise": "hooks",
    "deactivate_symnoise": "hooks",
    "symnoise_forward": "hooks",
    "SymNoiseHook": "hooks",
    "SymNoiseSettings": "settings",
}
__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
