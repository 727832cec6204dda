"""`SymNoiseSFTTrainer`: TRL's `SFTTrainer` training on [X + s*eps, X - s*eps] (SymNoise, Algorithm 2)."""

import contextlib

from datasets import Dataset
from transformers import ProcessorMixin
from trl import SFTTrainer

from .config import SymNoiseSFTConfig
from .data import check_not_all_dropped
from .mixin import SymNoiseMixin, with_symnoise_fields


class SymNoiseSFTTrainer(SymNoiseMixin, SFTTrainer):
    """[`~trl.SFTTrainer`] with SymNoise: set `symnoise_alpha` in [`SymNoiseSFTConfig`].

    Each training micro-batch is doubled inside `training_step` and its embeddings replaced by the two symmetric
    noisy copies, so the loss is the mean of the two halves' losses. Evaluation, prediction and generation see the
    plain model. With `symnoise_alpha=None` the trainer is `SFTTrainer`. The model card names SymNoise and cites
    the paper.
    """

    _tag_names = ["trl", "sft", "symnoise"]
    _name = "SFT with SymNoise"

    def __init__(
        self,
        model,
        args: SymNoiseSFTConfig | None = None,
        data_collator=None,
        train_dataset=None,
        eval_dataset=None,
        processing_class=None,
        **kwargs,
    ):
        model_name = model if isinstance(model, str) else model.config.name_or_path
        args = with_symnoise_fields(
            args, SymNoiseSFTConfig, type(self).__name__, f"{model_name.split('/')[-1]}-SymNoise-SFT"
        )
        if args.symnoise_alpha is not None and isinstance(processing_class, ProcessorMixin):
            raise ValueError(
                "SymNoiseSFTTrainer supports text-only models: with a processor (vision-language model) the "
                "embeddings mix image features, which SymNoise does not define. Set `symnoise_alpha=None` or use a "
                "text model with its tokenizer."
            )
        n_given = len(train_dataset) if isinstance(train_dataset, Dataset) else 0
        super().__init__(model, args, data_collator, train_dataset, eval_dataset, processing_class, **kwargs)
        check_not_all_dropped(self.train_dataset, n_given, args.max_length)

    @contextlib.contextmanager
    def _real_tokens_counted_once(self):
        """Relies on SFTTrainer.compute_loss adding each training batch's token count (attention_mask.sum(), or
        position_ids.size(1) when padding-free) to the private `_total_train_tokens`, which it logs as `num_tokens`.
        The model ran on both SymNoise copies (one doubled batch, or two passes), so every real token was counted
        twice inside the block: halve what the block added."""
        before = self._total_train_tokens
        yield
        self._total_train_tokens = before + (self._total_train_tokens - before) // 2
        self._metrics["train"]["num_tokens"] = [self._total_train_tokens]
