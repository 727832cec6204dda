"""Trainers: `SymNoiseMixin`, SymNoise for any transformers `Trainer` subclass: the hook's lifetime, the step.

    class MyTrainer(SymNoiseMixin, SomeTrainer):  # the mixin first, so its training_step wraps the trainer's
        ...

The trainer's arguments need the `symnoise_*` fields (`SymNoiseTrainingArguments`, `SymNoiseSFTConfig`, or an
arguments class with `SymNoiseArguments` mixed in). The mixin wraps `train` (the embedding hook lives as long as the
call) and `training_step` (the doubled batch, or the two passes of the two-pass mode); everything else is the
trainer's own.
"""

import contextlib
import warnings
from pathlib import Path

from ..hf.activation import attach_symnoise, deactivate_symnoise
from ..hf.internals import hub_names_for_the_card, real_tokens_counted_once, trl_model_card
from ..hf.support import check_symnoise_support
from ..noise.seeds import MicroBatchSeeds
from .arguments import symnoise_settings
from .clean_loss import CleanLossMeter
from .model_card import PAPER, TAG, base_model_name, complete_card
from .preemption import SaveOnSignalCallback, resume_folder, staged_checkpoint
from .two_pass import weighted_half


@trl_model_card(paper=PAPER)  # a TRL trainer's card cites SymNoise
class SymNoiseMixin:
    """SymNoise for a transformers `Trainer` subclass: set `symnoise_alpha` in its arguments.

    Each training micro-batch is doubled inside `training_step` and its embeddings replaced by the two symmetric
    noisy copies, so the loss is the mean of the two halves' losses (`num_items_in_batch` doubled: gradient
    accumulation stays exact). Evaluation, prediction and generation see the plain model. With `symnoise_alpha=None`
    the trainer is the trainer it is mixed into.

    `symnoise_seeds` (a `MicroBatchSeeds`, made by `train()`) holds the seed of the latest training micro-batch;
    `symnoise_trl.active_symnoise_hook(trainer.model)` is the hook while `train()` runs.

    Whatever `symnoise_alpha` is, each checkpoint is written under a staging folder and appears as `checkpoint-N`
    only when whole, and with `save_on_signal` in the arguments (`SymNoiseSFTConfig`, `SymNoiseTrainingArguments`:
    on by default) `train()` stops at SIGTERM or Ctrl-C with a checkpoint (`SaveOnSignalCallback`).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._init_symnoise()

    def _init_symnoise(self):
        """After the trainer's own __init__ (here, or in `add_symnoise` for a trainer built elsewhere)."""
        if not hasattr(self.args, "symnoise_alpha"):
            warnings.warn(
                f"{type(self).__name__} mixes in SymNoiseMixin, but its arguments ({type(self.args).__name__}) have "
                "no `symnoise_alpha`: SymNoise is off. Mix SymNoiseArguments into the arguments class.",
                UserWarning,
                stacklevel=3,
            )
        else:
            settings = self._symnoise_run_settings()
            if settings is not None:  # what the arguments cannot know, at the earliest point: the model, the run
                check_symnoise_support(self.model, settings, self.accelerator, trainer=self)
        self._symnoise_hook = None  # attached for the duration of train()
        self._clean_loss = None  # a CleanLossMeter during train(), with symnoise_clean_loss_steps
        self.symnoise_seeds = None

    def _symnoise_run_settings(self):
        """The run's settings from the arguments as they are now (None: SymNoise off, or arguments without the
        `symnoise_*` fields). Setting `symnoise_alpha` back to None turns SymNoise off, whatever the other fields say
        (the arguments' own check, when they are built, is the strict one)."""
        if getattr(self.args, "symnoise_alpha", None) is None or not hasattr(self.args, "symnoise_fields"):
            return None
        return symnoise_settings(self.args.symnoise_fields(), self.args.neftune_noise_alpha)

    def train(self, resume_from_checkpoint=None, *args, **kwargs):
        resume_from_checkpoint = resume_folder(self, resume_from_checkpoint)  # True: the newest complete checkpoint
        args = (resume_from_checkpoint, *args)
        stop_on_signal = getattr(self.args, "save_on_signal", False) and not any(
            isinstance(callback, SaveOnSignalCallback) for callback in self.callback_handler.callbacks
        )
        if not stop_on_signal:
            return self._train_with_symnoise(*args, **kwargs)
        callback = SaveOnSignalCallback()
        self.add_callback(callback)
        try:
            return self._train_with_symnoise(*args, **kwargs)
        finally:  # also when train() raises before on_train_end
            callback.restore_signal_handlers()
            self.remove_callback(callback)

    def _train_with_symnoise(self, *args, **kwargs):
        # The arguments are mutable: the run's settings are built from them as it starts, once, and everything below
        # takes them; the support check runs again (the backend or two-pass may have been set since __init__, NEFTune
        # on the trainer).
        settings = self._symnoise_run_settings()
        if settings is None:
            return super().train(*args, **kwargs)
        self.symnoise_seeds = MicroBatchSeeds(settings.base_seed(self.args.seed), self.accelerator.process_index)
        self._clean_loss = CleanLossMeter(settings.clean_loss_steps) if settings.clean_loss_steps else None
        self._symnoise_hook = attach_symnoise(self.model, settings, self.accelerator, trainer=self)
        try:
            return super().train(*args, **kwargs)
        finally:
            deactivate_symnoise(self.model, accelerator=self.accelerator)
            self._symnoise_hook = self._clean_loss = None

    def training_step(self, model, inputs, num_items_in_batch=None):
        if self._symnoise_hook is None:  # SymNoise off, or a training step outside train()
            return super().training_step(model, inputs, num_items_in_batch)
        step, meter = self.state.global_step, self._clean_loss
        measured = meter is not None and meter.due(step)
        if measured:  # before the noisy step: the same parameters, and no gradient
            meter.measure(model, inputs, step)
        loss = self._noisy_training_step(model, inputs, num_items_in_batch, self.symnoise_seeds.next(step))
        if measured:
            meter.add_training_loss(loss)
        return loss

    def _noisy_training_step(self, model, inputs, num_items_in_batch, seed):
        hook = self._symnoise_hook
        if not hook.settings.symmetric:  # a one-sided ablation noise: the batch and its loss as they are
            with hook.armed(inputs, seed) as noisy:
                return super().training_step(model, noisy, num_items_in_batch)
        # SymNoise normalises by twice the label tokens: the loss is the mean of the two halves, in one pass over the
        # doubled batch or as two passes weighted 1/2; gradient accumulation stays exact.
        doubled_items = None if num_items_in_batch is None else 2 * num_items_in_batch
        with real_tokens_counted_once(self):
            if not hook.settings.two_pass:
                with hook.armed(inputs, seed) as doubled:
                    return super().training_step(model, doubled, doubled_items)
            # Two-pass mode: X + s*eps, then X - s*eps, from one seed. The first pass keeps its gradients local, the
            # second all-reduces their sum (when the Trainer syncs this micro-batch at all).
            loss = 0.0
            for half in ("plus", "minus"):
                sync = self.accelerator.no_sync(model) if half == "plus" else contextlib.nullcontext()
                with sync, weighted_half(self, num_items_in_batch), hook.armed(inputs, seed, half) as one_half:
                    loss = loss + super().training_step(model, one_half, doubled_items)
            return loss

    def _save_checkpoint(self, model, trial):
        with staged_checkpoint(self, trial):
            super()._save_checkpoint(model, trial)

    def create_model_card(self, *args, **kwargs):
        """The trainer's card, tagged `symnoise`, naming the base model (a local folder too) and recording the SymNoise
        settings."""
        # TRL writes the card at every save, inside train(): the run's settings then; outside it, the arguments'.
        hook = self._symnoise_hook
        settings = hook.settings if hook is not None else self._symnoise_run_settings()
        if settings is None:
            return super().create_model_card(*args, **kwargs)
        if not args and "model_name" not in kwargs:  # TRL's card is titled by it; transformers' defaults to the same
            kwargs["model_name"] = Path(self.args.output_dir).name
        tags = kwargs.get("tags")  # transformers' and TRL's cards both take `tags`
        tags = [tags] if isinstance(tags, str) else list(tags or [])
        kwargs["tags"] = tags if TAG in tags else [*tags, TAG]
        base_model, is_hub_id = base_model_name(self.model.config)  # the config TRL and transformers read
        with hub_names_for_the_card(self, base_model, is_hub_id):
            super().create_model_card(*args, **kwargs)
        if self.is_world_process_zero():  # where the trainers write the card
            complete_card(self.args.output_dir, base_model, is_hub_id, settings, self.args.seed)

    def log(self, logs: dict, *args, **kwargs):
        if self._clean_loss is not None and "loss" in logs:  # a training log: add the clean loss measured since
            logs = {**logs, **self._clean_loss.logs(self.accelerator)}
        return super().log(logs, *args, **kwargs)


_MIXED_CLASSES: dict[type, type] = {}


def add_symnoise(trainer):
    """SymNoise for a trainer that is already built, by a framework that builds its own (Axolotl, or a trainer
    class chosen at run time): its class becomes `SymNoise<Class>(SymNoiseMixin, <Class>)`, as if it had been declared
    with the mixin first, and the mixin's construction-time checks run now. The trainer's arguments need the
    `symnoise_*` fields (`SymNoiseArguments` mixed into their class). Returns the trainer; a trainer that already has
    SymNoise is returned as it is."""
    if isinstance(trainer, SymNoiseMixin):
        return trainer
    # A method set on the instance (another plugin's patch) would hide the mixin's, and SymNoise would never run.
    shadowed = sorted(name for name in ("train", "training_step", "log", "create_model_card") if name in vars(trainer))
    if shadowed:
        raise ValueError(
            f"cannot add SymNoise to this {type(trainer).__name__}: {', '.join(shadowed)} is set on the instance and "
            "would hide SymNoiseMixin's; add SymNoise before patching the trainer"
        )
    cls = type(trainer)
    if cls not in _MIXED_CLASSES:  # one class per trainer class: trainers of one class share it
        # Named in the trainer class's module for its repr; not importable from there (trainers are not pickled).
        _MIXED_CLASSES[cls] = type(f"SymNoise{cls.__name__}", (SymNoiseMixin, cls), {"__module__": cls.__module__})
    trainer.__class__ = _MIXED_CLASSES[cls]
    trainer._init_symnoise()
    return trainer
