"""HF: every private or undocumented name of transformers, TRL and the libraries they load (bitsandbytes, Hugging
Face's kernels) that symnoise-trl relies on, in one place (torch's Dynamo's one is beside its one user, noise/hook.py).

Each helper says which behaviour of which library it relies on; the version floors' suite (scripts/test_floors.sh)
and the trainer tests fail when one of them moves. Nothing else in the package touches these names.
"""

import contextlib
import importlib.util
import logging
import sys


def arguments_dict(args) -> dict:
    """Every field of a `TrainingArguments` (or subclass) as keyword arguments for another arguments class. Relies on
    `to_dict()` listing the fields, and corrects what it hides: every `*_token` field (hub_token, and SFTConfig's
    eos_token and pad_token, which are tokens, not secrets) comes back masked."""
    fields = args.to_dict()
    fields.update({name: getattr(args, name) for name in fields if name.endswith("_token")})
    return fields


def trl_model_card(*, name: str | None = None, tags: list[str] | None = None, paper: dict | None = None):
    """Class decorator for a TRL trainer (or a mixin of one): the model card TRL writes
    (`BaseTrainer.create_model_card`, at every save) reads the class attributes `_name` (the training procedure),
    `_tag_names` and `_paper` ({"title", "id", "citation"}), as TRL's DPOTrainer sets them. Sets those given."""

    def decorate(cls):
        for attribute, value in (("_name", name), ("_tag_names", tags), ("_paper", paper)):
            if value is not None:
                setattr(cls, attribute, value)
        return cls

    return decorate


@contextlib.contextmanager
def real_tokens_counted_once(trainer):
    """Around the forward(s) of both SymNoise copies: count their real tokens once in the `num_tokens` metric.

    Relies on TRL's trainers that count tokens inside `compute_loss` (SFTTrainer: each training batch's
    attention_mask.sum(), or position_ids.size(1) when padding-free) adding the count to the private
    `_total_train_tokens`, which they log from `_metrics["train"]["num_tokens"]`. The model ran on both copies (one
    doubled batch, or two passes), so every real token was counted twice inside the block: halve what the block
    added. transformers' Trainer counts tokens before
    `training_step` (it has no `_total_train_tokens`): nothing to correct."""
    if not hasattr(trainer, "_total_train_tokens"):
        yield
        return
    before = trainer._total_train_tokens
    yield
    trainer._total_train_tokens = before + (trainer._total_train_tokens - before) // 2
    trainer._metrics["train"]["num_tokens"] = [trainer._total_train_tokens]


def loss_is_normalised_by_count(trainer, num_items_in_batch) -> bool:
    """Whether Trainer.training_step takes the loss of `compute_loss` as normalised by `num_items_in_batch` (else it
    divides it by `current_gradient_accumulation_steps` before the backward). Relies on Trainer's rule:
    `loss_is_scaled_for_ga` when set (transformers >= 5.19), else a count is given and the model takes loss kwargs
    (`model_accepts_loss_kwargs`), or a `compute_loss_func` is set."""
    scaled = getattr(trainer, "loss_is_scaled_for_ga", None)
    if scaled is not None:
        return scaled
    return (trainer.model_accepts_loss_kwargs and num_items_in_batch is not None) or (
        trainer.compute_loss_func is not None
    )


@contextlib.contextmanager
def accumulation_steps_doubled(trainer):
    """Halve the loss of the `training_step` calls inside the block, for a loss that Trainer divides by
    `current_gradient_accumulation_steps` (set by Trainer's loop for each accumulation window)."""
    steps = trainer.current_gradient_accumulation_steps
    trainer.current_gradient_accumulation_steps = 2 * steps
    try:
        yield
    finally:
        trainer.current_gradient_accumulation_steps = steps


@contextlib.contextmanager
def router_loss_halved(trainer, model):
    """Halve a mixture-of-experts router auxiliary loss inside the block, wherever the stack reads its coefficient
    `router_aux_loss_coef`: TRL's SFTTrainer attribute (TRL 1.16), the model config (TRL 1.14's fused forward) and
    transformers' MoE models (their own loss, under a plain Trainer). `model` is the unwrapped transformers model."""
    config = getattr(model, "config", None)
    owners = [owner for owner in (trainer, model, config) if hasattr(owner, "router_aux_loss_coef")]
    saved = [(owner, owner.router_aux_loss_coef) for owner in owners]
    for owner, coefficient in saved:
        owner.router_aux_loss_coef = coefficient / 2
    try:
        yield
    finally:
        for owner, coefficient in saved:
            owner.router_aux_loss_coef = coefficient


def model_parallelism_in_use(accelerator) -> bool:
    """Whether accelerate shards or shares the batch across ranks (tensor, context or sequence parallelism), from its
    `parallelism_config` (accelerate >= 1.10)."""
    parallelism = getattr(accelerator, "parallelism_config", None)
    return parallelism is not None and (parallelism.tp_enabled or parallelism.cp_enabled or parallelism.sp_enabled)


def neftune_alpha(owner) -> float | None:
    """NEFTune's alpha where transformers keeps it once NEFTune can no longer be refused at the arguments: a
    Trainer's `neftune_noise_alpha` attribute (copied from the arguments in `Trainer.__init__`; `train()` activates
    NEFTune from it), or an embedding module's `neftune_noise_alpha` (set by `activate_neftune` beside its hook)."""
    return getattr(owner, "neftune_noise_alpha", None)


# The loggers that speak while bitsandbytes imports on a CPU with AVX512-BF16 and asks Hugging Face's `kernels` for an
# optional 4-bit CPU kernel from the Hub: offline, kernels says it skips the publisher trust check, then bitsandbytes
# that the kernel is missing and it uses its own code. Both are about bitsandbytes' internals, not the user's run.
_OPTIONAL_KERNEL_LOGGERS = ("kernels._internals.hf_hub", "bitsandbytes.backends.cpu.ops")


def import_bitsandbytes_quietly() -> None:
    """Import bitsandbytes (when installed and not yet imported) with the two loggers above at ERROR, then restore
    them. peft imports bitsandbytes on its own import, so every transformers Trainer import does; importing it first,
    here, keeps a command's output to its own lines, and bitsandbytes' later warnings reach the user as usual."""
    if "bitsandbytes" in sys.modules or importlib.util.find_spec("bitsandbytes") is None:
        return
    loggers = [logging.getLogger(name) for name in _OPTIONAL_KERNEL_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        import bitsandbytes  # noqa: F401
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


@contextlib.contextmanager
def hub_names_for_the_card(trainer, base_model: str | None, is_hub_id: bool):
    """While a trainer writes its card: the base model's Hub id as the config's name, and the output folder as the
    model of the usage snippet when the run has no Hub repository. Relies on TRL's and transformers' card templates
    reading the base model from `model.config.name_or_path` (they link and tag it) and the snippet's model from the
    trainer's `hub_model_id`; both are set back afterwards."""
    config = trainer.model.config
    saved = config.name_or_path, trainer.hub_model_id
    if is_hub_id:
        config.name_or_path = base_model
    trainer.hub_model_id = trainer.hub_model_id or str(trainer.args.output_dir)
    try:
        yield
    finally:
        config.name_or_path, trainer.hub_model_id = saved


def name_a_local_base_model(card: str, base_model: str) -> str:
    """TRL's card template links the base model to the Hub and renders a local folder as `[None](.../None)`: name the
    folder there instead."""
    return card.replace("[None](https://huggingface.co/None)", f"`{base_model}` (a local model folder)")


def checkpoint_run_dir(trainer, trial=None) -> str:
    """The folder `Trainer._save_checkpoint` writes `checkpoint-N` into: `Trainer._get_output_dir(trial)` (transformers
    5.17-5.25: `output_dir`, or a trial's folder under hyperparameter search)."""
    return trainer._get_output_dir(trial=trial)


@contextlib.contextmanager
def checkpoint_written_under(trainer, folder: str):
    """Inside the block `Trainer._save_checkpoint` writes its `checkpoint-N` (model, optimizer, scheduler, RNG and
    trainer state, on every rank) under `folder`: it asks `_get_output_dir` for the run's folder, set here on the
    instance. It also rotates old checkpoints there (there are none) and looks there for the best model's folder."""
    trainer._get_output_dir = lambda trial=None: folder
    try:
        yield
    finally:
        del trainer._get_output_dir
