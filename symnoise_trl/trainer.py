"""`SymNoiseSFTTrainer`: TRL's `SFTTrainer` training on [X + s*eps, X - s*eps] (SymNoise, Algorithm 2)."""

from transformers import ProcessorMixin
from trl import SFTConfig, SFTTrainer
from trl.trainer.utils import get_config_model_id

from .batch import micro_batch_seed
from .config import SymNoiseSFTConfig
from .hooks import activate_symnoise, deactivate_symnoise, symnoise_forward


class SymNoiseSFTTrainer(SFTTrainer):
    """[`~trl.SFTTrainer`] with SymNoise: set `symnoise_alpha` in [`SymNoiseSFTConfig`].

    Each training micro-batch is doubled inside `compute_loss` and its embeddings replaced by the two symmetric
    noisy copies, so the loss is the mean of the two halves' losses. Evaluation, prediction and generation see the
    plain model. With `symnoise_alpha=None` the trainer is `SFTTrainer`.
    """

    _tag_names = ["trl", "sft", "symnoise"]

    def __init__(
        self,
        model,
        args: SymNoiseSFTConfig | SFTConfig | None = None,
        data_collator=None,
        train_dataset=None,
        eval_dataset=None,
        processing_class=None,
        **kwargs,
    ):
        if args is None:
            model_name = model if isinstance(model, str) else get_config_model_id(model.config)
            args = SymNoiseSFTConfig(f"{model_name.split('/')[-1]}-SymNoise-SFT")
        elif not isinstance(args, SymNoiseSFTConfig):  # like SFTTrainer does for TrainingArguments
            dict_args = args.to_dict()
            dict_args["hub_token"] = args.hub_token  # to_dict hides the hub_token
            args = SymNoiseSFTConfig(**dict_args)
        if args.symnoise_alpha is not None and isinstance(processing_class, ProcessorMixin):
            raise ValueError(
                "SymNoiseSFTTrainer supports text-only models: with a processor (vision-language model) the "
                "embeddings mix image features, which SymNoise does not define. Set `symnoise_alpha=None` or use a "
                "text model with its tokenizer."
            )
        super().__init__(model, args, data_collator, train_dataset, eval_dataset, processing_class, **kwargs)
        parallelism = self.accelerator.parallelism_config
        if args.symnoise_alpha is not None and parallelism is not None:
            if parallelism.tp_enabled or parallelism.cp_enabled or parallelism.sp_enabled:
                raise ValueError(
                    "SymNoiseSFTTrainer supports data parallelism (DDP, FSDP, DeepSpeed ZeRO) only: tensor, context "
                    "and sequence parallelism shard or share the batch, and its doubling is not defined for them."
                )
        self._symnoise_step = None  # global step of the last training micro-batch
        self._symnoise_micro_step = 0

    @property
    def symnoise_base_seed(self) -> int:
        return self.args.seed if self.args.symnoise_seed is None else self.args.symnoise_seed

    def _next_symnoise_seed(self) -> int:
        # Micro-steps are counted within each optimizer step, so a run resumed at a checkpoint (a step boundary)
        # draws the noise of an uninterrupted run.
        step = self.state.global_step
        self._symnoise_micro_step = self._symnoise_micro_step + 1 if step == self._symnoise_step else 0
        self._symnoise_step = step
        return micro_batch_seed(
            self.symnoise_base_seed, step, self._symnoise_micro_step, self.accelerator.process_index
        )

    def train(self, *args, **kwargs):
        if self.args.symnoise_alpha is None:
            return super().train(*args, **kwargs)
        activate_symnoise(
            self.model,
            self.args.symnoise_alpha,
            length=self.args.symnoise_length,
            backend=self.args.symnoise_backend,
            accelerator=self.accelerator,
        )
        try:
            return super().train(*args, **kwargs)
        finally:
            deactivate_symnoise(self.model, accelerator=self.accelerator)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.args.symnoise_alpha is None or not self.model.training:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        seed = self._next_symnoise_seed()
        tokens_before = self._total_train_tokens
        with symnoise_forward(self.model, inputs, seed, accelerator=self.accelerator) as doubled:
            # The doubled batch has twice the label tokens: the loss is then the mean of the two halves, and
            # gradient accumulation stays exact.
            doubled_items = None if num_items_in_batch is None else 2 * num_items_in_batch
            result = super().compute_loss(model, doubled, return_outputs, doubled_items)
        # Token counts are of real tokens: SFTTrainer counted both copies.
        self._total_train_tokens = tokens_before + (self._total_train_tokens - tokens_before) // 2
        self._metrics["train"]["num_tokens"] = [self._total_train_tokens]
        return result
