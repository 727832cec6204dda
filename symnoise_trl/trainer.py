"""`SymNoiseSFTTrainer`: TRL's `SFTTrainer` training on [X + s*eps, X - s*eps] (SymNoise, Algorithm 2)."""

import contextlib

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
        if args.symnoise_alpha is not None and args.symnoise_two_pass and self.is_deepspeed_enabled:
            raise ValueError(
                "`symnoise_two_pass=True` runs two backward passes per micro-batch, which DeepSpeed's engine does not "
                "support. Use the one-pass mode (`symnoise_two_pass=False`) with DeepSpeed."
            )
        self._symnoise_step = None  # global step of the last training micro-batch
        self._symnoise_micro_step = 0
        self._symnoise_half = "both"  # "plus" / "minus" during the passes of the two-pass mode
        self._symnoise_seed = None  # the seed both passes share

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
            distribution=self.args.symnoise_distribution,
            accelerator=self.accelerator,
        )
        try:
            return super().train(*args, **kwargs)
        finally:
            deactivate_symnoise(self.model, accelerator=self.accelerator)

    def training_step(self, model, inputs, num_items_in_batch=None):
        if self.args.symnoise_alpha is None or not self.args.symnoise_two_pass:
            return super().training_step(model, inputs, num_items_in_batch)
        # Two-pass mode: X + s*eps, then X - s*eps, from one seed. The first pass keeps its gradients local, the
        # second all-reduces their sum (when the Trainer syncs this micro-batch at all).
        self._symnoise_seed = self._next_symnoise_seed()
        losses = []
        try:
            for half in ("plus", "minus"):
                self._symnoise_half = half
                sync = self.accelerator.no_sync(model) if half == "plus" else contextlib.nullcontext()
                with sync:
                    losses.append(super().training_step(model, inputs, num_items_in_batch))
        finally:
            self._symnoise_half, self._symnoise_seed = "both", None
        return losses[0] + losses[1]

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.args.symnoise_alpha is None or not self.model.training:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        half = self._symnoise_half
        seed = self._next_symnoise_seed() if half == "both" else self._symnoise_seed
        tokens_before = self._total_train_tokens
        with symnoise_forward(self.model, inputs, seed, accelerator=self.accelerator, half=half) as batch:
            # SymNoise normalises by twice the label tokens: the loss is the mean of the two halves, in one pass over
            # the doubled batch or as two passes weighted 1/2; gradient accumulation stays exact. One-sided noises
            # keep the batch and its count.
            items = num_items_in_batch
            if num_items_in_batch is not None and self.args.symnoise_distribution == "symmetric":
                items = 2 * num_items_in_batch
            result = super().compute_loss(model, batch, return_outputs, items)
        if num_items_in_batch is None and half != "both":  # SFTTrainer took this half's own token mean
            result = (result[0] / 2, result[1]) if return_outputs else result / 2
        # Token counts are of real tokens: SFTTrainer counted both copies, or each pass of the two-pass mode.
        counted = self._total_train_tokens - tokens_before
        if self.args.symnoise_distribution == "symmetric":
            counted = {"both": counted // 2, "plus": counted, "minus": 0}[half]
        self._total_train_tokens = tokens_before + counted
        self._metrics["train"]["num_tokens"] = [self._total_train_tokens]
        return result
