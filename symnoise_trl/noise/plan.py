"""Noise: `NoisePlan`, what the embedding hook does to one micro-batch's embeddings, and the noise scale it uses.

Built by the hook (`hook.py`) from checked values (the settings, the batch's layout and lengths, a seed tensor, the
half) and applied inside the embedding forward; it calls the op's unchecked entry.
"""

from dataclasses import dataclass, field

import torch

from ..kernels.symnoise_op import symnoise_unchecked
from .one_sided import one_sided_noise
from .settings import SymNoiseSettings


def noise_scale(lengths: torch.Tensor, alpha: float, dim: int) -> torch.Tensor:
    """s_n = alpha / sqrt(3 * L_n * d), and 0 where L_n is 0 (padding). fp32, shaped like `lengths`."""
    scale = alpha / torch.sqrt(3.0 * lengths.double() * dim)
    return torch.where(lengths > 0, scale, 0.0).to(torch.float32)


@dataclass(frozen=True, kw_only=True)
class NoisePlan:
    """What the embedding hook does to one micro-batch: the settings, the layout, L per token, the seed, the half.

    half="both": the batch was doubled (see `doubled`) and the embeddings become [X + s*eps, X - s*eps].
    half="plus"/"minus": the embeddings become that half alone (two-pass mode; same seed, same signs). A one-sided
    `settings.distribution` noises the batch as it is.
    """

    settings: SymNoiseSettings
    layout: str
    lengths: torch.Tensor  # (B, L) or (1, T): L_n per token, 0 = no noise
    seed: torch.Tensor  # 0-d int64 on the CPU, in [0, 2**63): the op's seed
    half: str = "both"
    # Derived here, outside any compiled region; `apply` reads these and never `half`. NOTE: the two passes of the
    # two-pass mode differ only in the sign of the scale (x - s*eps is x + (-s)*eps, exactly), held in a tensor, so
    # one compiled graph serves both: a `half` string read in the forward recompiled it for each (8 graphs vs 6).
    doubled: bool = field(init=False)  # the model runs on the doubled batch: both SymNoise copies in one pass
    scale_sign: torch.Tensor = field(init=False)  # 0-d fp32 on the CPU: -1 for the minus pass, else +1

    def __post_init__(self):
        object.__setattr__(self, "doubled", self.half == "both" and self.settings.symmetric)
        object.__setattr__(self, "scale_sign", torch.tensor(-1.0 if self.half == "minus" else 1.0, device="cpu"))

    def apply(self, embeds: torch.Tensor) -> torch.Tensor:
        batch, tokens = self.lengths.shape
        expected = (batch, tokens)
        if self.doubled:
            expected = (2 * batch, tokens) if self.layout == "padded" else (1, 2 * tokens)
        if tuple(embeds.shape[:2]) != expected:
            raise RuntimeError(
                f"SymNoise expected embeddings of shape {expected} + (d,) for half={self.half!r}, got "
                f"{tuple(embeds.shape)}"
            )
        settings = self.settings
        scale = noise_scale(self.lengths.to(embeds.device), settings.alpha, embeds.shape[-1])
        if not settings.symmetric:
            return one_sided_noise(embeds, scale, self.seed, settings.distribution, settings.backend)
        if not self.doubled:  # one pass of the two-pass mode: the op's plus half with a signed scale
            return symnoise_unchecked(embeds, scale * self.scale_sign, self.seed, "plus", settings.backend)
        # The first copy in; both out, one after the other on the batch dim (padded) or the token dim (packed), as
        # the doubled batch lays them out. NOTE: the op allocates them in that shape: a reshaped (2, ...) result was
        # a view, on whose base torch.compile guarded (a recompile of the first decoder layer under transformers
        # 5.25), and the packed one a copy.
        if self.layout == "padded":
            return symnoise_unchecked(embeds[:batch], scale, self.seed, "both", settings.backend, dim=0)
        return symnoise_unchecked(embeds[:, :tokens], scale, self.seed, "both", settings.backend, dim=1)
