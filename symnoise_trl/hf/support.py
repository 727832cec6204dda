"""HF: what a run can support, checked once for every way in (`activate_symnoise`, the trainers' mixin,
`add_symnoise`): the embedding module, the backend on the run's device, the parallelism, NEFTune, the engine. Each
message is worded here, once."""

from ..kernels.symnoise_op import triton_available, triton_runs_on
from ..noise.settings import SymNoiseSettings
from .internals import model_parallelism_in_use, neftune_alpha
from .model import input_embeddings


def neftune_conflict(alpha: float, neftune: float, where: str = "") -> ValueError:
    """The error for NEFTune beside SymNoise; `where` names where NEFTune's alpha was found (the arguments: "")."""
    return ValueError(
        f"`symnoise_alpha` ({alpha}) and `neftune_noise_alpha` ({neftune}{where}) are both set; choose one: NEFTune's "
        "hook would add its noise to both SymNoise halves."
    )


def check_symnoise_support(model, settings: SymNoiseSettings, accelerator=None, trainer=None):
    """Raise a ValueError for what `settings` cannot do on `model` in this run, else return the embedding module.

    `accelerator` (the run's device and parallelism) and `trainer` (its NEFTune attribute and engine) where there are
    any: a custom loop has neither."""
    embeddings = input_embeddings(model, accelerator)  # a model without token embeddings: one line, now
    if settings.backend == "triton":  # where the run trains (a custom loop: where the embeddings are)
        device = accelerator.device if accelerator is not None else embeddings.weight.device
        if not triton_runs_on(device):
            raise ValueError(
                "`symnoise_backend='triton'` needs a CUDA device and the triton package (or TRITON_INTERPRET=1 on a "
                f"CPU): this run trains on {device}{'' if triton_available() else ' without triton'}. Use 'auto' "
                "(Triton on CUDA, else torch) or 'torch': both give the same noise."
            )
    if accelerator is not None and model_parallelism_in_use(accelerator):
        raise ValueError(
            "SymNoise supports data parallelism (DDP, FSDP, DeepSpeed ZeRO) only: tensor, context and sequence "
            "parallelism shard or share the batch, and its doubling is not defined for them."
        )
    for owner, where in ((trainer, " on the trainer"), (embeddings, " on the model's embeddings")):
        neftune = neftune_alpha(owner)  # None for no trainer (a custom loop)
        if neftune is not None:
            raise neftune_conflict(settings.alpha, neftune, where)
    if settings.two_pass and trainer is not None and trainer.is_deepspeed_enabled:
        raise ValueError(
            "`symnoise_two_pass=True` runs two backward passes per micro-batch, which DeepSpeed's engine does not "
            "support. Use the one-pass mode (`symnoise_two_pass=False`) with DeepSpeed."
        )
    return embeddings
