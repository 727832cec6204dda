"""Trainers: `SymNoiseTrainer`, transformers' `Trainer` with SymNoise (for causal LMs with the standard collators)."""

from collections.abc import Callable

import torch
from transformers import PreTrainedModel, Trainer, TrainingArguments

from .arguments import SymNoiseArguments, SymNoiseTrainingArguments, with_symnoise_fields
from .mixin import SymNoiseMixin


class SymNoiseTrainer(SymNoiseMixin, Trainer):
    """transformers' [`~transformers.Trainer`] with SymNoise: set `symnoise_alpha` in [`SymNoiseTrainingArguments`].
    For causal language models with the standard collators (`DataCollatorForLanguageModeling`, padding with
    labels); the model card names SymNoise and cites the paper."""

    def __init__(
        self,
        model: PreTrainedModel | torch.nn.Module | None = None,
        args: TrainingArguments | None = None,
        data_collator: Callable | None = None,
        train_dataset=None,
        eval_dataset=None,
        processing_class=None,
        **kwargs,
    ):
        """Trainer's parameters; the rest (`callbacks`, `compute_metrics`, ...) pass by keyword."""
        # Any arguments with the fields mixed in work for transformers' Trainer as they are.
        args = with_symnoise_fields(
            args, SymNoiseTrainingArguments, type(self).__name__, "trainer_output", accept=SymNoiseArguments
        )
        super().__init__(model=model, args=args, data_collator=data_collator, train_dataset=train_dataset,
                         eval_dataset=eval_dataset, processing_class=processing_class, **kwargs)  # fmt: skip
