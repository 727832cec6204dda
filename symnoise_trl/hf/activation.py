"""HF: SymNoise on a model, for custom training loops (and the trainers): activate it, arm it for a block of forwards,
see it, remove it.

Mirrors transformers' `activate_neftune` / `deactivate_neftune`: a forward hook (`symnoise_trl.noise.hook`) on the
model's input embedding module, found inside accelerate and PEFT wrappers. `activate_symnoise` runs the same support
check as the trainers (`support.py`).
"""

from contextlib import contextmanager

from ..kernels.reference import check_seed
from ..kernels.symnoise_op import check_half
from ..noise.hook import HOOK_ATTRIBUTE, SymNoiseHook
from ..noise.seeds import seed_tensor
from ..noise.settings import SymNoiseSettings
from .model import input_embeddings, placeholder_token_ids
from .support import check_symnoise_support


def attach_symnoise(model, settings: SymNoiseSettings, accelerator=None, trainer=None) -> SymNoiseHook:
    """Check what the run supports (`check_symnoise_support`), then register a hook with `settings` on `model`'s
    input embeddings: the trainers' entry (with their accelerator and themselves) and `activate_symnoise`'s."""
    embeddings = check_symnoise_support(model, settings, accelerator, trainer)
    if getattr(embeddings, HOOK_ATTRIBUTE, None) is not None:
        raise ValueError("SymNoise is already active on this model; call deactivate_symnoise(model) first")
    return SymNoiseHook(settings, placeholder_token_ids(model, accelerator)).register(embeddings)


def activate_symnoise(
    model,
    alpha: float,
    *,
    length: str = "sequence",
    backend: str = "auto",
    distribution: str = "symmetric",
    accelerator=None,
) -> SymNoiseHook:
    """Attach a SymNoise hook to `model`'s input embeddings. It stays inert until `symnoise_forward` arms it.

    Args:
        model: a transformers model, a PEFT model, or either wrapped by accelerate (pass `accelerator`).
        alpha, length, backend, distribution: the noise, as in `SymNoiseSettings` (which validates them).
    """
    settings = SymNoiseSettings(alpha=alpha, length=length, distribution=distribution, backend=backend)
    return attach_symnoise(model, settings, accelerator)


def deactivate_symnoise(model, accelerator=None) -> bool:
    """Remove the SymNoise hook from `model`'s input embeddings. Returns whether one was there."""
    return SymNoiseHook.remove(input_embeddings(model, accelerator))


def active_symnoise_hook(model, accelerator=None) -> SymNoiseHook | None:
    """The SymNoise hook active on `model`'s input embeddings, or None. Its `settings` say which noise, its `plan`
    whether a batch is armed."""
    return getattr(input_embeddings(model, accelerator), HOOK_ATTRIBUTE, None)


@contextmanager
def symnoise_forward(model, batch: dict, seed: int, accelerator=None, half: str = "both"):
    """Double `batch` and arm the model's SymNoise hook for the forward passes inside the block.

    Yields the doubled batch (the batch itself for a one-sided `distribution`): run the model on it inside the
    block. With labels, the model's mean token loss over the doubled batch is (loss(X + s*eps) + loss(X - s*eps)) / 2;
    a loss normalised by a token count computed on the original batch must use twice that count. Every forward
    inside the block sees the same noise (same seed).

    `half="plus"` / `"minus"` yields the batch as it is and noises it with that half only: two blocks with the same
    seed, each loss weighted 1/2, give the gradients of the doubled batch at the activation memory of one copy.

        activate_symnoise(model, alpha=5.0)
        for step, batch in enumerate(loader):
            with symnoise_forward(model, batch, seed=step) as doubled:
                loss = model(**doubled).loss
            loss.backward()
        deactivate_symnoise(model)
    """
    seed = check_seed(seed)
    hook = active_symnoise_hook(model, accelerator)
    if hook is None:
        raise ValueError("SymNoise is not active on this model; call activate_symnoise(model, alpha) first")
    if hook.plan is not None:
        raise RuntimeError("symnoise_forward blocks cannot be nested")
    check_half(half)
    check_symnoise_support(model, hook.settings, accelerator)  # again: the model may have moved since
    with hook.armed(batch, seed_tensor(seed), half) as model_batch:
        yield model_batch
