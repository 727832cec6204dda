"""Integrations: SymNoise as an Axolotl plugin: two lines in an Axolotl YAML file.

    plugins:
      - symnoise_trl.integrations.axolotl.SymNoisePlugin
    symnoise_alpha: 5

Every `symnoise_*` field of `SymNoiseArguments` is a YAML key with the same meaning and default (`SymNoiseAxolotlArgs`
is made from those fields), checked by Axolotl's config validation through the fields' own rules, before the model
loads. The plugin adds the fields to Axolotl's training arguments (`get_training_args_mixin`, `get_training_args`)
and mixes `SymNoiseMixin` into the trainer Axolotl has built (`post_trainer_create`).

Why after the trainer is built, and not `get_trainer_cls`: Axolotl takes the trainer class from the first plugin that
returns one, ahead of its own choice (a reward or process-reward trainer, `trainer_cls`, a model family's trainer).
A SymNoise trainer class would displace another plugin's class or be displaced by it, and would replace Axolotl's
choice with one fixed class. Mixing into the built trainer keeps whichever class was chosen, with Axolotl's trainer
mixins (packing, RNG, checkpoints, ...), and puts SymNoise's `train` and `training_step` in front of them, as
`class T(SymNoiseMixin, Chosen)` would.

Axolotl is imported only here (and only its plugin base class and config schema); nothing else in the package
depends on it.
"""

from dataclasses import fields

from axolotl.integrations.base import BasePlugin
from pydantic import BaseModel, Field, create_model, model_validator

from ..trainers.arguments import SYMNOISE_FIELDS, SymNoiseArguments, symnoise_settings
from ..trainers.mixin import add_symnoise

_DATACLASS_FIELDS = {f.name: f for f in fields(SymNoiseArguments)}


class _SymNoiseChecks(BaseModel):
    @model_validator(mode="after")
    def check_symnoise(self):
        values = {name: getattr(self, name) for name in SYMNOISE_FIELDS}
        symnoise_settings(values, getattr(self, "neftune_noise_alpha", None))  # names the key
        if values["symnoise_alpha"] is not None:
            trainer = next((k for k in ("rl", "reward_model", "process_reward_model") if getattr(self, k, None)), None)
            if trainer is not None:
                value = getattr(self, trainer)
                value = getattr(value, "value", value)  # `rl` is an enum
                raise ValueError(
                    f"`symnoise_alpha` is set with `{trainer}: {value}`: SymNoise trains causal language models "
                    "(Axolotl's SFT trainer), not preference, reward or process-reward models"
                )
        return self


# The YAML keys: the `symnoise_*` fields, their types, defaults and help texts, taken from SymNoiseArguments. Strict
# types, as the dataclass's own checks are: `symnoise_alpha: true` or `symnoise_two_pass: "yes"` is an error naming
# the key, not 1.0 or True (an int is still a float).
SymNoiseAxolotlArgs = create_model(
    "SymNoiseAxolotlArgs",
    __base__=_SymNoiseChecks,
    __doc__="The `symnoise_*` keys of an Axolotl config (see `SymNoiseArguments`).",
    **{
        name: (field.type, Field(default=field.default, description=field.metadata["help"], strict=True))
        for name, field in _DATACLASS_FIELDS.items()
    },
)


class SymNoisePlugin(BasePlugin):
    """SymNoise for `axolotl train`: `plugins: [symnoise_trl.integrations.axolotl.SymNoisePlugin]` and
    `symnoise_alpha: 5` in the YAML file."""

    def get_input_args(self) -> str:
        return f"{__name__}.SymNoiseAxolotlArgs"

    def get_training_args_mixin(self) -> str:
        return f"{SymNoiseArguments.__module__}.SymNoiseArguments"

    def get_training_args(self, cfg) -> dict:
        return {name: cfg[name] for name in SYMNOISE_FIELDS if name in cfg}

    def post_trainer_create(self, cfg, trainer):
        if cfg.symnoise_alpha is None:
            return
        alpha = getattr(trainer.args, "symnoise_alpha", None)
        if alpha != cfg.symnoise_alpha:  # arguments built without the plugin's fields: SymNoise would be off
            raise RuntimeError(
                f"`symnoise_alpha: {cfg.symnoise_alpha}` did not reach the training arguments of "
                f"{type(trainer).__name__} ({type(trainer.args).__name__}: symnoise_alpha={alpha}); its trainer "
                "builder does not use Axolotl's plugin training arguments, so SymNoise cannot train it"
            )
        add_symnoise(trainer)
