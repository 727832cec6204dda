"""Noise: `SymNoiseHook`, the forward hook of the input embeddings: registered, armed for one batch, removed.

The hook does nothing until it is armed with a batch's plan (`armed`), so generation, evaluation and any other
forward of the model see plain embeddings. State, in two places, both owned here: the hook registered on an
embedding module is an attribute of that module (so a deep copy of the model carries a hook of its own), and the
armed plans live in `_ARMED_PLANS` (see the NOTE there). Finding a model's embeddings and checking what the run
supports is `symnoise_trl.hf`'s; `activate_symnoise` there is the public way in.
"""

import copy
import itertools
from contextlib import contextmanager

import torch

from .batch import batch_layout, double_batch, token_lengths
from .plan import NoisePlan
from .settings import SymNoiseSettings

# The plan of each armed hook, by the hook's key. NOTE: kept outside the hook on purpose. torch.compile gives static
# shapes to tensors it reaches through an nn.Module, and the hook sits in the embeddings' forward hooks: a plan on
# the hook recompiled the forward for every new sequence length (12 graphs in 12 steps, against SFT's 6); read from a
# module global, its tensors get dynamic shapes like the batch's own.
_ARMED_PLANS: dict[int, NoisePlan] = {}
_hook_keys = itertools.count()
HOOK_ATTRIBUTE = "_symnoise_hook"  # on the input embedding module, while a hook is registered there


def traced_only_inside_its_caller(function) -> None:
    """torch.compile traces `function` where a compiled frame calls it, and never compiles it as a frame of its own:
    called from eager code it runs eagerly, with everything it calls. Relies on torch._dynamo's per-code frame
    strategy (`set_code_exec_strategy`, what `torch.compiler.disable(recursive=False)` uses for its wrapper's frame),
    which decides only how a frame that Python starts is run, not whether a traced caller inlines the code.

    Why: when a graph break makes Dynamo run a model's forward eagerly (transformers 5.25's hub-kernel layers under
    activation checkpointing do), the module calls below it start frames of their own. A forward hook's frame then
    compiled twice (static shapes, then dynamic), two graphs that plain SFT does not have."""
    from torch._dynamo.eval_frame import set_code_exec_strategy  # torch >= 2.11 (the floor) has both
    from torch._dynamo.types import FrameAction, FrameExecStrategy

    set_code_exec_strategy(function.__code__, FrameExecStrategy(FrameAction.SKIP, FrameAction.SKIP))


class SymNoiseHook:
    """Forward hook of the input embeddings: applies the armed plan, if any, to the embedding output.

    `settings` is the noise it applies; `placeholder_ids` the model's image/video/audio token ids, which get no noise
    and do not count in L (`symnoise_trl.hf.model.placeholder_token_ids`); `plan` the plan armed for the current
    forward, or None (inert)."""

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

    def register(self, embeddings: torch.nn.Module) -> "SymNoiseHook":
        """Register on `embeddings` (a module without a SymNoise hook: the caller checks)."""
        self.handle = embeddings.register_forward_hook(self)
        setattr(embeddings, HOOK_ATTRIBUTE, self)
        return self

    @staticmethod
    def remove(embeddings: torch.nn.Module) -> bool:
        """Remove the SymNoise hook registered on `embeddings`; returns whether there was one."""
        hook = getattr(embeddings, HOOK_ATTRIBUTE, None)
        if hook is None:
            return False
        hook.handle.remove()
        delattr(embeddings, HOOK_ATTRIBUTE)
        return True

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
