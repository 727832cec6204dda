"""Trainers: `SymNoiseSFTTrainer`, TRL's `SFTTrainer` training on [X + s*eps, X - s*eps] (SymNoise, Algorithm 2)."""

from collections.abc import Callable

from datasets import Dataset
from transformers import PreTrainedModel, TrainingArguments
from trl import SFTTrainer

from ..hf.internals import trl_model_card
from .arguments import with_symnoise_fields
from .mixin import SymNoiseMixin
from .model_card import TAG
from .sft_config import SymNoiseSFTConfig


@trl_model_card(name="SFT with SymNoise", tags=["trl", "sft", TAG])  # the paper: SymNoiseMixin
class SymNoiseSFTTrainer(SymNoiseMixin, SFTTrainer):
    """[`~trl.SFTTrainer`] with SymNoise: set `symnoise_alpha` in [`SymNoiseSFTConfig`].

    Each training micro-batch is doubled inside `training_step` and its embeddings replaced by the two symmetric
    noisy copies, so the loss is the mean of the two halves' losses. Vision-language models train the same way, with
    a processor: the images of each example go into both halves, and only text-token embeddings are noised
    (docs/noise-stream.md, section 4). Evaluation, prediction and generation see the plain model. With
    `symnoise_alpha=None` the trainer is `SFTTrainer`. The model card names SymNoise and cites the paper.
    """

    def __init__(
        self,
        model: str | PreTrainedModel,
        args: SymNoiseSFTConfig | TrainingArguments | None = None,
        data_collator: Callable | None = None,
        train_dataset=None,
        eval_dataset=None,
        processing_class=None,
        **kwargs,
    ):
        """SFTTrainer's parameters; the rest (`peft_config`, `callbacks`, `formatting_func`, ...) pass by keyword.
        Arguments without the `symnoise_*` fields are converted to `SymNoiseSFTConfig` (SymNoise off, with a
        warning)."""
        model_name = model if isinstance(model, str) else model.config.name_or_path
        args = with_symnoise_fields(
            args, SymNoiseSFTConfig, type(self).__name__, f"{model_name.split('/')[-1]}-SymNoise-SFT"
        )
        n_given = len(train_dataset) if isinstance(train_dataset, Dataset) else 0
        super().__init__(model=model, args=args, data_collator=data_collator, train_dataset=train_dataset,
                         eval_dataset=eval_dataset, processing_class=processing_class, **kwargs)  # fmt: skip
        check_not_all_dropped(self.train_dataset, n_given, args.max_length)


def check_not_all_dropped(prepared, n_given: int, max_length: int | None) -> None:
    """After SFTTrainer's preparation: raise when truncation dropped every example (TRL drops those left without a
    single completion token, and training would fail later on an empty sampler)."""
    if isinstance(prepared, Dataset) and n_given and len(prepared) == 0:
        raise ValueError(
            f"all {n_given} training examples were dropped: truncated to max_length={max_length} tokens, none keeps a "
            "token to learn from (TRL drops examples whose labels are all masked). Raise --max_length, or set "
            "truncation_mode='keep_end'."
        )
