"""Trainers: the `symnoise_*` fields of a trainer's arguments, validated where they enter, and their conversion.

`SymNoiseArguments` mixes them into any `TrainingArguments` subclass, `SymNoiseTrainingArguments` is transformers'
`TrainingArguments` with them, `symnoise_settings` turns the fields into the run's `SymNoiseSettings` (the one rule
book, for a YAML file's values too), `with_symnoise_fields` converts other arguments as a trainer receives them.
"""

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, fields

from transformers import TrainingArguments

from ..hf.internals import arguments_dict
from ..hf.support import neftune_conflict
from ..kernels.symnoise_op import BACKENDS
from ..noise.settings import DISTRIBUTIONS, LENGTH_MODES, SettingError, SymNoiseSettings
from .preemption import SaveOnSignalArguments


@dataclass
class SymNoiseArguments:
    r"""
    The SymNoise fields, to mix into a `TrainingArguments` subclass (put it first:
    `class MyArgs(SymNoiseArguments, TrainingArguments)`). They are checked in `__post_init__`; the fields other than
    `symnoise_alpha` need it: setting one while it is `None` (SymNoise off) is an error.

    Parameters:
        symnoise_alpha (`float` or `None`, *optional*, defaults to `None`):
            SymNoise strength, read like `neftune_noise_alpha` (the papers use 5, 10, 15). Each training micro-batch
            is replaced by the doubled batch `[X + s*eps, X - s*eps]`, with `eps` Rademacher signs and
            `s = alpha / sqrt(3 * L * d)`. `None` turns SymNoise off; `0` doubles the batch without noise (a
            diagnostic that reproduces plain SFT).
        symnoise_length (`str`, *optional*, defaults to `"sequence"`):
            What `L` is: `"sequence"`, each sequence's number of real tokens, with no noise on padding (NEFTune's
            own training code; correct under packing); `"padded"`, the padded length of the batch, noise on every
            position (transformers' NEFTune hook).
        symnoise_seed (`int` or `None`, *optional*, defaults to `None`):
            Base seed of the noise; `None` uses `seed`. Each micro-batch draws from a hash of (base seed, global
            step, micro-step, data-parallel rank): a resumed run draws the noise of an uninterrupted one.
        symnoise_backend (`str`, *optional*, defaults to `"auto"`):
            Implementation of the noise op: `"triton"` (the fused kernel), `"torch"` (the reference) or `"auto"`
            (Triton on CUDA, else torch). Both give the same bits.
        symnoise_distribution (`str`, *optional*, defaults to `"symmetric"`):
            `"symmetric"` is SymNoise (Algorithm 2, two copies). For the paper's ablations, one-sided noises that keep
            the batch, RMS-matched at the same alpha (per-element RMS alpha / sqrt(3 L d)): `"rademacher"` (+-1,
            the paper's "Bernoulli"), `"uniform"` (NEFTune exactly), `"gaussian"` (sigma alpha / sqrt(3 L d)).
        symnoise_two_pass (`bool`, *optional*, defaults to `False`):
            Memory-neutral mode: instead of one pass over the doubled batch, two forward/backward passes over the
            original batch, `X + s*eps` then `X - s*eps` (same seed, each loss weighted 1/2). Same gradients, the
            activation memory of plain SFT, the compute of the one-pass mode. The first pass does not all-reduce
            under DDP. Not supported with DeepSpeed.
        symnoise_clean_loss_steps (`int`, *optional*, defaults to `0`):
            Every N optimizer steps (the first included), also compute the loss of the same batch without noise (no
            gradient, one extra forward of the original batch) and log it as `clean_loss`, beside `clean_loss_gap`,
            the training loss of those steps minus `clean_loss`: the logged loss of a noised run cannot be compared
            with a plain run's, the clean loss can. `0` turns it off. It changes no gradient, noise or random state.
    """

    symnoise_alpha: float | None = field(
        default=None,
        metadata={
            "help": "SymNoise strength, read like `neftune_noise_alpha` (papers: 5, 10, 15): each micro-batch is "
            "trained as [X + s*eps, X - s*eps] with Rademacher eps and s = alpha / sqrt(3 * L * d). `None` turns "
            "SymNoise off; 0 doubles the batch without noise."
        },
    )
    symnoise_length: str = field(
        default="sequence",
        metadata={
            "help": "What L is in the noise scale: 'sequence' (each sequence's real length, no noise on padding) or "
            "'padded' (the padded batch length, like transformers' NEFTune hook).",
            "choices": list(LENGTH_MODES),
        },
    )
    symnoise_seed: int | None = field(
        default=None,
        metadata={
            "help": "Base seed of the SymNoise noise; defaults to `seed`. Per micro-batch, the seed is a hash of "
            "(base seed, global step, micro-step, data-parallel rank)."
        },
    )
    symnoise_backend: str = field(
        default="auto",
        metadata={
            "help": "SymNoise op implementation: 'triton' (fused kernel), 'torch' (reference) or 'auto' (Triton on "
            "CUDA, else torch). Both give bit-identical noise.",
            "choices": list(BACKENDS),
        },
    )
    symnoise_distribution: str = field(
        default="symmetric",
        metadata={
            "help": "'symmetric' is SymNoise (two copies). Ablations, one-sided and RMS-matched at the same alpha: "
            "'rademacher' (+-1 noise, the paper's Bernoulli), 'uniform' (NEFTune), 'gaussian'.",
            "choices": list(DISTRIBUTIONS),
        },
    )
    symnoise_two_pass: bool = field(
        default=False,
        metadata={
            "help": "Memory-neutral SymNoise: two forward/backward passes of the original batch size (X + s*eps, then "
            "X - s*eps, each loss weighted 1/2) instead of one pass over the doubled batch. Same gradients, the "
            "activation memory of plain SFT. Not supported with DeepSpeed."
        },
    )
    symnoise_clean_loss_steps: int = field(
        default=0,
        metadata={
            "help": "Every N optimizer steps (the first included), also compute the loss of the same batch without "
            "noise (no gradient, one extra forward) and log it as `clean_loss`, with `clean_loss_gap` (the training "
            "loss of those steps minus it). 0 turns it off. Training is unchanged, bit for bit."
        },
    )

    def __post_init__(self):
        # The fields are checked here, when the arguments are built (the earliest point, so that a CLI or a YAML file
        # fails before anything loads), and built into the run's settings once more by the trainer's train(), since
        # TrainingArguments are mutable. The noise fields are checked also while SymNoise is off (alpha None): a
        # typo in one of them is an error whether or not alpha is set. A numpy integer seed or step count becomes an
        # int here, where the field enters.
        settings = symnoise_settings(self.symnoise_fields(), self.neftune_noise_alpha)
        if settings is not None:
            self.symnoise_seed, self.symnoise_clean_loss_steps = settings.seed, settings.clean_loss_steps
        super().__post_init__()  # the TrainingArguments subclass this is mixed into

    def symnoise_fields(self) -> dict:
        """The `symnoise_*` fields and their values."""
        return {name: getattr(self, name) for name in SYMNOISE_FIELDS}


SYMNOISE_FIELDS = tuple(f.name for f in fields(SymNoiseArguments))
_DEFAULTS = {f.name: f.default for f in fields(SymNoiseArguments)}


def symnoise_settings(values: Mapping, neftune_noise_alpha: float | None = None) -> SymNoiseSettings | None:
    """The run's `SymNoiseSettings` from `symnoise_*` fields, or None when SymNoise is off (`symnoise_alpha` None).

    `values` maps some field names to values (the others keep their defaults): a `TrainingArguments`' own fields
    (`SymNoiseArguments.symnoise_fields()`), or an Axolotl YAML file's keys. Raises a ValueError naming the field:
    an unknown one, a bad value or combination (`SymNoiseSettings`' rules), another field set while SymNoise is off,
    or `neftune_noise_alpha` beside it. Writes nothing anywhere."""
    unknown = sorted(set(values) - set(SYMNOISE_FIELDS))
    if unknown:
        raise ValueError(f"unknown SymNoise fields {unknown}; the fields are {list(SYMNOISE_FIELDS)}")
    given = {**_DEFAULTS, **values}
    alpha = given["symnoise_alpha"]
    fields_ = {name.removeprefix("symnoise_"): given[name] for name in SYMNOISE_FIELDS if name != "symnoise_alpha"}
    if alpha is None:  # each value is still checked, but two-pass combines with nothing while SymNoise is off
        fields_["two_pass"] = False
    try:
        settings = SymNoiseSettings(alpha=0.0 if alpha is None else alpha, **fields_)
    except SettingError as error:  # name the field
        raise ValueError(f"`symnoise_{error.setting}` {error.problem}") from None
    if alpha is None:
        # The other symnoise_* fields mean nothing while SymNoise is off: setting one is a forgotten alpha.
        changed = [name for name in SYMNOISE_FIELDS if given[name] != _DEFAULTS[name]]
        if changed:
            raise ValueError(
                f"{', '.join(f'`{name}`' for name in changed)} set while `symnoise_alpha` is None (SymNoise off): "
                "set `symnoise_alpha` (e.g. 5) to train with SymNoise, or leave these at their defaults"
            )
        return None
    if neftune_noise_alpha is not None:
        raise neftune_conflict(settings.alpha, neftune_noise_alpha)
    return settings


@dataclass
class SymNoiseTrainingArguments(SymNoiseArguments, SaveOnSignalArguments, TrainingArguments):
    """Arguments of [`SymNoiseTrainer`]: every field of transformers' [`~transformers.TrainingArguments`], plus the
    `symnoise_*` fields of [`SymNoiseArguments`] and `save_on_signal` ([`SaveOnSignalArguments`])."""


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
    return config_cls(**arguments_dict(args))
