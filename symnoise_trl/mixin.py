"""`SymNoiseMixin`: SymNoise for any transformers `Trainer` subclass, and `SymNoiseTrainer`, transformers' `Trainer`
with it.

    class MyTrainer(SymNoiseMixin, SomeTrainer):  # the mixin first, so its training_step wraps the trainer's
        ...

The trainer's arguments need the `symnoise_*` fields (`SymNoiseTrainingArguments`, `SymNoiseSFTConfig`, or an
arguments class with `SymNoiseArguments` mixed in). The mixin wraps `train` (the embedding hook lives as long as the
call) and `training_step` (the doubled batch, or the two passes of the two-pass mode); everything else is the
trainer's own.
"""

import contextlib
import os
import textwrap
import warnings

from transformers import Trainer, TrainingArguments

from .arguments import SymNoiseArguments, SymNoiseTrainingArguments
from .batch import micro_batch_seed
from .hooks import SymNoiseHook, deactivate_symnoise, symnoise_forward
from .kernels.symnoise_op import triton_available, triton_runs_on

PAPER = {
    "title": "SymNoise: Advancing Language Model Fine-tuning with Symmetric Noise",
    "id": "2312.01523",
    "citation": textwrap.dedent("""\
        @article{yadav2023symnoise,
            title   = {{SymNoise: Advancing Language Model Fine-tuning with Symmetric Noise}},
            author  = {Abhay Kumar Yadav and Arjun Singh},
            year    = 2023,
            journal = {arXiv preprint arXiv:2312.01523},
            url     = {https://arxiv.org/abs/2312.01523},
        }"""),
}


def with_symnoise_fields(args, config_cls, trainer_name: str, default_output_dir: str, accept=None):
    """`args` as the trainer takes them: as they are if an instance of `accept` (default `config_cls`), else
    converted to `config_cls` (a class with the symnoise_* fields), as TRL's trainers convert TrainingArguments to
    their config. Arguments without the fields turn SymNoise off, which is worth a warning: it is usually a
    forgotten config class."""
    if isinstance(args, accept or config_cls):
        return args
    if not isinstance(args, SymNoiseArguments):
        given = "no arguments" if args is None else f"a {type(args).__name__}"
        warnings.warn(
            f"{trainer_name} got {given}, which has no `symnoise_alpha`: SymNoise is off and the trainer trains "
            f"without it. Pass {config_cls.__name__}(symnoise_alpha=5.0, ...) to train with SymNoise.",
            UserWarning,
            stacklevel=3,
        )
    if args is None:
        return config_cls(default_output_dir)
    dict_args = args.to_dict()
    # to_dict hides every `*_token` field: hub_token, and SFTConfig's eos_token and pad_token (tokens, not secrets)
    dict_args.update({name: getattr(args, name) for name in dict_args if name.endswith("_token")})
    return config_cls(**dict_args)


class SymNoiseMixin:
    """SymNoise for a transformers `Trainer` subclass: set `symnoise_alpha` in its arguments.

    Each training micro-batch is doubled inside `training_step` and its embeddings replaced by the two symmetric
    noisy copies, so the loss is the mean of the two halves' losses (`num_items_in_batch` doubled: gradient
    accumulation stays exact). Evaluation, prediction and generation see the plain model. With `symnoise_alpha=None`
    the trainer is the trainer it is mixed into.
    """

    _paper = PAPER  # TRL's trainers put it in the model card

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not hasattr(self.args, "symnoise_alpha"):
            warnings.warn(
                f"{type(self).__name__} mixes in SymNoiseMixin, but its arguments ({type(self.args).__name__}) have "
                "no `symnoise_alpha`: SymNoise is off. Mix SymNoiseArguments into the arguments class.",
                UserWarning,
                stacklevel=2,
            )
        elif self.args.symnoise_alpha is not None:
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
        parallelism = getattr(self.accelerator, "parallelism_config", None)
        if parallelism is not None and (parallelism.tp_enabled or parallelism.cp_enabled or parallelism.sp_enabled):
            raise ValueError(
                f"{type(self).__name__} supports data parallelism (DDP, FSDP, DeepSpeed ZeRO) only: tensor, context "
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
        settings = getattr(self.args, "symnoise_settings", None)
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
                    self._weighted_half(num_items_in_batch),
                    symnoise_forward(self.model, inputs, seed, accelerator=self.accelerator, half=half) as one_half,
                ):
                    losses.append(super().training_step(model, one_half, doubled_items))
            return losses[0] + losses[1]

    def _real_tokens_counted_once(self):
        """A context around the forward(s) of both copies, for a trainer that counts the tokens it trains on inside
        `compute_loss` (transformers' Trainer counts them before `training_step`: nothing to correct)."""
        return contextlib.nullcontext()

    @contextlib.contextmanager
    def _weighted_half(self, num_items_in_batch):
        """Weight one pass of the two-pass mode by 1/2, router auxiliary loss (MoE) included.

        Relies on Trainer.training_step's rule for the loss it gets from compute_loss: normalised by
        `num_items_in_batch` (`loss_is_scaled_for_ga`, or by default when the model takes loss kwargs and a count is
        given), or else divided by `current_gradient_accumulation_steps` before the backward.
        - Normalised by the count: the doubled count halves the token loss, and the router loss, which is added per
          micro-batch with its coefficient, is halved through that coefficient, wherever the stack reads it: the
          `router_aux_loss_coef` attribute of TRL's SFTTrainer (TRL 1.16), of the model config (TRL 1.14's fused
          forward) and of transformers' MoE models (their own loss, under a plain Trainer).
        - Divided by the steps: doubling `current_gradient_accumulation_steps` for the pass halves the whole loss.
        """
        scaled = getattr(self, "loss_is_scaled_for_ga", None)  # transformers >= 5.19
        if scaled is None:
            scaled = (self.model_accepts_loss_kwargs and num_items_in_batch is not None) or (
                self.compute_loss_func is not None
            )
        if scaled and num_items_in_batch is None:
            raise RuntimeError(
                "`symnoise_two_pass=True` cannot weight its two passes here: Trainer gave no `num_items_in_batch` "
                "and does not divide this trainer's loss by the accumulation steps. Use the one-pass mode."
            )
        if scaled:
            model = self.accelerator.unwrap_model(self.model)
            model = model.get_base_model() if hasattr(model, "get_base_model") else model  # a PEFT model's own
            config = getattr(model, "config", None)
            owners = [owner for owner in (self, model, config) if hasattr(owner, "router_aux_loss_coef")]
            saved = [(owner, owner.router_aux_loss_coef) for owner in owners]
            for owner, coefficient in saved:
                owner.router_aux_loss_coef = coefficient / 2
            try:
                yield
            finally:
                for owner, coefficient in saved:
                    owner.router_aux_loss_coef = coefficient
            return
        steps = self.current_gradient_accumulation_steps
        self.current_gradient_accumulation_steps = 2 * steps
        try:
            yield
        finally:
            self.current_gradient_accumulation_steps = steps


class SymNoiseTrainer(SymNoiseMixin, Trainer):
    """transformers' [`~transformers.Trainer`] with SymNoise: set `symnoise_alpha` in [`SymNoiseTrainingArguments`].
    For causal language models with the standard collators (`DataCollatorForLanguageModeling`, padding with
    labels); the model card names SymNoise and cites the paper."""

    def __init__(self, model=None, args: TrainingArguments | None = None, *rest, **kwargs):
        # Any arguments with the fields mixed in work for transformers' Trainer as they are.
        args = with_symnoise_fields(
            args, SymNoiseTrainingArguments, type(self).__name__, "trainer_output", accept=SymNoiseArguments
        )
        super().__init__(model, args, *rest, **kwargs)

    def create_model_card(self, *args, tags=None, **kwargs):
        tags = [tags] if isinstance(tags, str) else list(tags or [])
        super().create_model_card(*args, tags=[*tags, "symnoise"], **kwargs)
        if self.is_world_process_zero():  # where Trainer writes the card
            _add_citation(self.args.output_dir)


def _add_citation(output_dir) -> None:
    """Append the paper and its BibTeX to the README.md model card that transformers' Trainer wrote."""
    path = os.path.join(output_dir, "README.md")
    if not os.path.exists(path):
        return
    with open(path, "a") as card:
        card.write(
            f"\n## SymNoise\n\nTrained with SymNoise ([{PAPER['title']}](https://arxiv.org/abs/{PAPER['id']})), "
            f"through symnoise-trl.\n\n```bibtex\n{PAPER['citation']}\n```\n"
        )
