"""`SymNoiseSFTTrainer`: TRL's `SFTTrainer` training on [X + s*eps, X - s*eps] (SymNoise, Algorithm 2)."""

import contextlib
import warnings

from datasets import Dataset
from transformers import ProcessorMixin
from trl import SFTTrainer

from .batch import micro_batch_seed
from .config import SymNoiseSFTConfig
from .data import check_not_all_dropped
from .hooks import SymNoiseHook, deactivate_symnoise, symnoise_forward
from .kernels.symnoise_op import triton_available, triton_runs_on


class SymNoiseSFTTrainer(SFTTrainer):
    """[`~trl.SFTTrainer`] with SymNoise: set `symnoise_alpha` in [`SymNoiseSFTConfig`].

    Each training micro-batch is doubled inside `training_step` and its embeddings replaced by the two symmetric
    noisy copies, so the loss is the mean of the two halves' losses. Evaluation, prediction and generation see the
    plain model. With `symnoise_alpha=None` the trainer is `SFTTrainer`.
    """

    _tag_names = ["trl", "sft", "symnoise"]

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
        args = _as_symnoise_config(args, model)
        if args.symnoise_alpha is not None and isinstance(processing_class, ProcessorMixin):
            raise ValueError(
                "SymNoiseSFTTrainer supports text-only models: with a processor (vision-language model) the "
                "embeddings mix image features, which SymNoise does not define. Set `symnoise_alpha=None` or use a "
                "text model with its tokenizer."
            )
        n_given = len(train_dataset) if isinstance(train_dataset, Dataset) else 0
        super().__init__(model, args, data_collator, train_dataset, eval_dataset, processing_class, **kwargs)
        check_not_all_dropped(self.train_dataset, n_given, args.max_length)
        if args.symnoise_alpha is not None:
            self._check_symnoise_support()
        self._symnoise_hook = None  # attached for the duration of train()
        self._symnoise_step = None  # global step of the last training micro-batch
        self._symnoise_micro_step = 0

    def _check_symnoise_support(self):
        device = self.accelerator.device
        if self.args.symnoise_backend == "triton" and not triton_runs_on(device):
            raise ValueError(
                f"`symnoise_backend='triton'` needs a CUDA device and the triton package; this run trains on {device}"
                f"{'' if triton_available() else ' without triton'}. Use 'auto' (Triton on CUDA, else torch) or "
                "'torch': both give the same noise."
            )
        parallelism = self.accelerator.parallelism_config
        if parallelism is not None and (parallelism.tp_enabled or parallelism.cp_enabled or parallelism.sp_enabled):
            raise ValueError(
                "SymNoiseSFTTrainer supports data parallelism (DDP, FSDP, DeepSpeed ZeRO) only: tensor, context "
                "and sequence parallelism shard or share the batch, and its doubling is not defined for them."
            )
        if self.args.symnoise_two_pass and self.is_deepspeed_enabled:
            raise ValueError(
                "`symnoise_two_pass=True` runs two backward passes per micro-batch, which DeepSpeed's engine does not "
                "support. Use the one-pass mode (`symnoise_two_pass=False`) with DeepSpeed."
            )

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
        settings = self.args.symnoise_settings
        if settings is None:
            return super().train(*args, **kwargs)
        self._symnoise_hook = SymNoiseHook.attach(self.model, settings, self.accelerator)
        try:
            return super().train(*args, **kwargs)
        finally:
            deactivate_symnoise(self.model, accelerator=self.accelerator)
            self._symnoise_hook = None

    def training_step(self, model, inputs, num_items_in_batch=None):
        if self._symnoise_hook is None:  # SymNoise off, or a training step outside train()
            return super().training_step(model, inputs, num_items_in_batch)
        settings = self._symnoise_hook.settings
        seed = self._next_symnoise_seed()
        if not settings.symmetric:  # a one-sided ablation noise: the batch and its loss as they are
            with symnoise_forward(self.model, inputs, seed, accelerator=self.accelerator) as noisy:
                return super().training_step(model, noisy, num_items_in_batch)
        # SymNoise normalises by twice the label tokens: the loss is the mean of the two halves, in one pass over the
        # doubled batch or as two passes weighted 1/2; gradient accumulation stays exact.
        doubled_items = None if num_items_in_batch is None else 2 * num_items_in_batch
        with self._real_tokens_counted_once():
            if not self.args.symnoise_two_pass:
                with symnoise_forward(self.model, inputs, seed, accelerator=self.accelerator) as doubled:
                    return super().training_step(model, doubled, doubled_items)
            # Two-pass mode: X + s*eps, then X - s*eps, from one seed. The first pass keeps its gradients local, the
            # second all-reduces their sum (when the Trainer syncs this micro-batch at all).
            losses = []
            for half in ("plus", "minus"):
                sync = self.accelerator.no_sync(model) if half == "plus" else contextlib.nullcontext()
                with (
                    sync,
                    self._halved_without_item_count(num_items_in_batch),
                    symnoise_forward(self.model, inputs, seed, accelerator=self.accelerator, half=half) as one_half,
                ):
                    losses.append(super().training_step(model, one_half, doubled_items))
            return losses[0] + losses[1]

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

    @contextlib.contextmanager
    def _halved_without_item_count(self, num_items_in_batch):
        """Weight one pass of the two-pass mode by 1/2 when Trainer gives no `num_items_in_batch` (a model that takes
        no loss kwargs). Relies on SFTTrainer then taking the pass's own token mean, and on Trainer.training_step
        dividing that loss by `current_gradient_accumulation_steps` before its backward: doubling the attribute for
        the pass halves the loss and its gradients. With a count, the doubled count does it and this does nothing."""
        if num_items_in_batch is not None:
            yield
            return
        scaled = getattr(self, "loss_is_scaled_for_ga", None)  # transformers >= 5.19
        if scaled or (scaled is None and self.compute_loss_func is not None):
            raise RuntimeError(
                "`symnoise_two_pass=True` cannot weight its two passes here: Trainer gave no `num_items_in_batch` "
                "and does not divide this trainer's loss by the accumulation steps. Use the one-pass mode."
            )
        steps = self.current_gradient_accumulation_steps
        self.current_gradient_accumulation_steps = 2 * steps
        try:
            yield
        finally:
            self.current_gradient_accumulation_steps = steps


def _as_symnoise_config(args, model) -> SymNoiseSFTConfig:
    """`args` as a SymNoiseSFTConfig (as SFTTrainer converts TrainingArguments to SFTConfig). A config without the
    SymNoise fields turns SymNoise off, which is worth a warning: it is usually a forgotten config class."""
    if isinstance(args, SymNoiseSFTConfig):
        return args
    given = "no config" if args is None else f"a {type(args).__name__}"
    warnings.warn(
        f"SymNoiseSFTTrainer got {given}, which has no `symnoise_alpha`: SymNoise is off and the trainer runs plain "
        "SFT. Pass SymNoiseSFTConfig(symnoise_alpha=5.0, ...) to train with SymNoise.",
        UserWarning,
        stacklevel=3,
    )
    if args is None:
        model_name = model if isinstance(model, str) else model.config.name_or_path
        return SymNoiseSFTConfig(f"{model_name.split('/')[-1]}-SymNoise-SFT")
    dict_args = args.to_dict()
    # to_dict hides every `*_token` field: hub_token, and SFTConfig's eos_token and pad_token (tokens, not secrets)
    dict_args.update({name: getattr(args, name) for name in dict_args if name.endswith("_token")})
    return SymNoiseSFTConfig(**dict_args)
