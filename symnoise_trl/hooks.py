"""Core: the SymNoise embedding hook. Attach it, arm it for one batch, see it, remove it (custom loops and trainers).

Mirrors transformers' `activate_neftune` / `deactivate_neftune`: a forward hook on the input embedding module. The
hook does nothing until `symnoise_forward` (or a trainer, through `SymNoiseHook.armed`) arms it with a batch's plan,
so generation, evaluation and any other forward of the model see plain embeddings.

State, in two places, both owned here: the active hook is an attribute of the embedding module (so a deep copy of
the model carries a hook of its own), and the armed plans live in `_ARMED_PLANS` (see the NOTE there).
"""

import copy
import itertools
from contextlib import contextmanager

import torch

from .batch import batch_layout, double_batch, token_lengths
from .hf_internals import neftune_alpha, traced_only_inside_its_caller
from .kernels.reference import check_seed
from .kernels.symnoise_op import HALVES, triton_runs_on
from .noise_plan import NoisePlan
from .noise_settings import SymNoiseSettings
from .seeds import seed_tensor

# The plan of each armed hook, by the hook's key. NOTE: kept outside the hook on purpose. torch.compile gives static
# shapes to tensors it reaches through an nn.Module, and the hook sits in the embeddings' forward hooks: a plan on
# the hook recompiled the forward for every new sequence length (12 graphs in 12 steps, against SFT's 6); read from a
# module global, its tensors get dynamic shapes like the batch's own.
_ARMED_PLANS: dict[int, NoisePlan] = {}
_hook_keys = itertools.count()
_HOOK_ATTRIBUTE = "_symnoise_hook"  # on the input embedding module, while a hook is active


class SymNoiseHook:
    """Forward hook of the input embeddings: applies the armed plan, if any, to the embedding output.

    `settings` is the noise it applies; `placeholder_ids` the model's image/video/audio token ids, which get no noise
    and do not count in L (`placeholder_token_ids`); `plan` the plan armed for the current forward, or None (inert)."""

    def __init__(self, settings: SymNoiseSettings, placeholder_ids: tuple[int, ...] = ()):
        self.settings = settings
        self.placeholder_ids = placeholder_ids
        self.key = next(_hook_keys)
        self.handle = None

    def __deepcopy__(self, memo):
        # A copied model (a reference or EMA copy) gets a hook of its own, armed separately from this one.
        copied = type(self)(self.settings, self.placeholder_ids)
        memo[id(self)] = copied
        copied.handle = copy.deepcopy(self.handle, memo)
        return copied

    @property
    def plan(self) -> NoisePlan | None:
        return _ARMED_PLANS.get(self.key)

    def __call__(self, module, args, output):
        plan = self.plan
        return output if plan is None else plan.apply(output)

    traced_only_inside_its_caller(__call__)

    @classmethod
    def attach(cls, model, settings: SymNoiseSettings, accelerator=None) -> "SymNoiseHook":
        """Register a hook with checked `settings` on `model`'s input embeddings (what `activate_symnoise` does)."""
        embeddings = input_embeddings(model, accelerator)
        if getattr(embeddings, _HOOK_ATTRIBUTE, None) is not None:
            raise ValueError("SymNoise is already active on this model; call deactivate_symnoise(model) first")
        neftune = neftune_alpha(embeddings=embeddings)
        if neftune is not None:
            raise ValueError(
                f"NEFTune is active on this model (neftune_noise_alpha={neftune}); its "
                "hook would add its noise to both SymNoise halves. Deactivate it (deactivate_neftune) or use one."
            )
        hook = cls(settings, placeholder_token_ids(model, accelerator))
        hook.handle = embeddings.register_forward_hook(hook)
        setattr(embeddings, _HOOK_ATTRIBUTE, hook)
        return hook

    @contextmanager
    def armed(self, batch: dict, seed: torch.Tensor, half: str = "both"):
        """Arm the hook for `batch` with a checked seed (a 0-d int64 CPU tensor) and half; yields the batch the model
        runs on (doubled for half="both" of the symmetric noise). The trainer's entry; `symnoise_forward` is the
        checked one."""
        layout = batch_layout(batch)
        lengths = token_lengths(batch, layout, self.settings.length, self.placeholder_ids)
        plan = NoisePlan(settings=self.settings, layout=layout, lengths=lengths, seed=seed, half=half)
        _ARMED_PLANS[self.key] = plan
        try:
            yield double_batch(batch, layout) if plan.doubled else batch
        finally:
            del _ARMED_PLANS[self.key]


def transformers_model(model, accelerator=None):
    """The transformers model inside `model`: unwrapped from accelerate (DDP, DeepSpeed, ...) and from PEFT."""
    if accelerator is not None:
        model = accelerator.unwrap_model(model)
    if hasattr(model, "get_base_model"):  # a PeftModel -> the transformers model it wraps
        model = model.get_base_model()
    return model


def input_embeddings(model, accelerator=None) -> torch.nn.Module:
    """The token embedding module whose output SymNoise noises; a ValueError naming the model class when there is
    none (`get_input_embeddings` not implemented, or returning something that is not a token embedding)."""
    model = transformers_model(model, accelerator)
    name = type(model).__name__
    try:
        embeddings = model.get_input_embeddings()
    except (AttributeError, NotImplementedError) as error:
        raise ValueError(
            f"SymNoise cannot find the input embeddings of {name}: get_input_embeddings() raised "
            f"{type(error).__name__}. SymNoise noises the output of the model's token embedding module."
        ) from None
    # A LoRA-adapted embedding (PEFT) wraps the torch.nn.Embedding as its `base_layer`.
    if isinstance(embeddings, torch.nn.Embedding) or isinstance(
        getattr(embeddings, "base_layer", None), torch.nn.Embedding
    ):
        return embeddings
    raise ValueError(
        f"SymNoise cannot find the input embeddings of {name}: get_input_embeddings() returned "
        f"{type(embeddings).__name__}, not a token embedding module (torch.nn.Embedding)."
    )


# The config fields that name a multimodal model's placeholder tokens: transformers' vision-language models (LLaVA,
# Qwen2-VL, Gemma 3, Idefics3, ...) embed them like text, then overwrite those positions with the image, video or
# audio features (`masked_scatter` on the embedding output). `*_index` are older aliases of the same ids.
PLACEHOLDER_FIELDS = (
    "image_token_id", "image_token_index", "video_token_id", "video_token_index", "audio_token_id",
    "audio_token_index",
)  # fmt: skip


def placeholder_token_ids(model, accelerator=None) -> tuple[int, ...]:
    """The token ids whose embeddings `model` replaces by image, video or audio features (empty for a text model).
    SymNoise adds no noise at those positions and counts only the other, text, tokens in L."""
    config = getattr(transformers_model(model, accelerator), "config", None)  # None: a plain torch module
    ids = {getattr(config, field, None) for field in PLACEHOLDER_FIELDS}
    return tuple(sorted(i for i in ids if isinstance(i, int) and not isinstance(i, bool)))


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
    return SymNoiseHook.attach(model, settings, accelerator)


def deactivate_symnoise(model, accelerator=None) -> bool:
    """Remove the SymNoise hook from `model`'s input embeddings. Returns whether one was there."""
    embeddings = input_embeddings(model, accelerator)
    hook = getattr(embeddings, _HOOK_ATTRIBUTE, None)
    if hook is None:
        return False
    hook.handle.remove()
    delattr(embeddings, _HOOK_ATTRIBUTE)
    return True


def active_symnoise_hook(model, accelerator=None) -> SymNoiseHook | None:
    """The SymNoise hook active on `model`'s input embeddings, or None. Its `settings` say which noise, its `plan`
    whether a batch is armed."""
    return getattr(input_embeddings(model, accelerator), _HOOK_ATTRIBUTE, None)


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
    if half not in HALVES:
        raise ValueError(f"half must be one of {HALVES}, got {half!r}")
    settings = hook.settings
    if settings.backend == "triton" and settings.distribution in ("symmetric", "rademacher"):  # those use the op
        device = input_embeddings(model, accelerator).weight.device
        if not triton_runs_on(device):
            raise ValueError(
                f"backend='triton' needs CUDA (or TRITON_INTERPRET=1 on a CPU); the embeddings are on {device}"
            )
    with hook.armed(batch, seed_tensor(seed), half) as model_batch:
        yield model_batch
