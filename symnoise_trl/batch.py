"""SymNoise's view of a training batch: its layout, its doubling, the per-token noise scale and the seeds.

Two layouts, as TRL's collators produce them:
- padded: per-example tensors of shape (B, L, ...); doubled on the batch dim to (2B, L, ...).
- packed (padding-free or packing with position ids, B = 1): per-token tensors (1, T); doubled on the token dim to
  (1, 2T) with `cu_seq_lens_*` and `seq_idx` extended, so a varlen attention kernel sees 2x the sequences and no
  sequence crosses the two copies.
Pure torch: no transformers or TRL imports.
"""

import hashlib
import struct
from dataclasses import dataclass, field

import torch

from .kernels import symnoise
from .noise import one_sided_noise
from .settings import SymNoiseSettings

# Tensors that hold one value per example (padded) or per token (packed): these are duplicated.
PER_TOKEN_KEYS = frozenset(
    {"input_ids", "labels", "shift_labels", "attention_mask", "position_ids", "completion_mask", "assistant_masks",
     "token_type_ids"}
)  # fmt: skip
PACKED_KEYS = frozenset({"cu_seq_lens_q", "cu_seq_lens_k", "seq_idx"})


def batch_layout(inputs: dict) -> str:
    """ "packed" for padding-free / position-id packed batches (no attention mask, B = 1), else "padded"."""
    if "input_ids" not in inputs:
        raise ValueError("SymNoise needs `input_ids` in the batch (it noises the embeddings of those tokens)")
    packed = "cu_seq_lens_q" in inputs or ("attention_mask" not in inputs and "position_ids" in inputs)
    if packed and inputs["input_ids"].shape[0] != 1:
        raise ValueError(
            f"a padding-free batch (position_ids, no attention_mask) must have batch size 1, got input_ids of shape "
            f"{tuple(inputs['input_ids'].shape)}"
        )
    return "packed" if packed else "padded"


def token_lengths(inputs: dict, layout: str, length: str = "sequence") -> torch.Tensor:
    """Per-token L of the noise scale, shaped like `input_ids`: 0 where a token gets no noise (padding).

    `length="sequence"`: the real length of the sequence the token belongs to. `length="padded"`: the padded
    length of the batch for every token (L of transformers' NEFTune hook, which noises padding too).
    """
    input_ids = inputs["input_ids"]
    if length == "padded":
        return torch.full(input_ids.shape, input_ids.shape[1], dtype=torch.float32, device=input_ids.device)
    if layout == "padded":
        mask = inputs.get("attention_mask")
        if mask is None:
            mask = torch.ones_like(input_ids)
        mask = mask.to(torch.float32)
        return mask.sum(dim=1, keepdim=True) * mask
    # NOTE: searchsorted, scatter_add and indexing keep this on the device: repeat_interleave by lengths or bincount
    # would read values back to the host to size their outputs, a sync on every training step.
    n_tokens, device = input_ids.shape[1], input_ids.device
    positions = torch.arange(n_tokens, device=device)
    if "cu_seq_lens_q" in inputs:
        cu = inputs["cu_seq_lens_q"].to(device=device, dtype=torch.int64)
        sequence = torch.searchsorted(cu[1:], positions, right=True).clamp(max=cu.numel() - 2)
        per_token = cu.diff()[sequence]
    else:  # sequences start where position_ids restarts at 0
        starts = inputs["position_ids"][0].to(device) == 0
        starts[0] = True
        sequence = torch.cumsum(starts.to(torch.int64), 0) - 1
        counts = torch.zeros(n_tokens, dtype=torch.int64, device=device)
        per_token = counts.scatter_add_(0, sequence, torch.ones_like(sequence))[sequence]
    return per_token.to(torch.float32).reshape(input_ids.shape)


def noise_scale(lengths: torch.Tensor, alpha: float, dim: int) -> torch.Tensor:
    """s_n = alpha / sqrt(3 * L_n * d), and 0 where L_n is 0 (padding). fp32, shaped like `lengths`."""
    scale = alpha / torch.sqrt(3.0 * lengths.double() * dim)
    return torch.where(lengths > 0, scale, 0.0).to(torch.float32)


def double_batch(inputs: dict, layout: str) -> dict:
    """The batch with every per-example (padded) or per-token (packed) tensor given twice. Other values pass as is."""
    n_tokens = inputs["input_ids"].shape[1]
    doubled = {}
    for key, value in inputs.items():
        if not isinstance(value, torch.Tensor):
            doubled[key] = value  # use_cache, max_length_q/k, ...
        elif key in PER_TOKEN_KEYS:
            doubled[key] = torch.cat([value, value], dim=0 if layout == "padded" else 1)
        elif layout == "packed" and key in ("cu_seq_lens_q", "cu_seq_lens_k"):
            doubled[key] = torch.cat([value, value[1:] + n_tokens])
        elif layout == "packed" and key == "seq_idx":
            doubled[key] = torch.cat([value, value + value.max() + 1], dim=1)
        else:
            raise ValueError(
                f"SymNoise does not know how to double the batch key {key!r} (layout {layout!r}); it supports "
                f"text-only batches with the keys {sorted(PER_TOKEN_KEYS | PACKED_KEYS)}"
            )
    return doubled


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
    seed: torch.Tensor  # 0-d int64 on the CPU: the op's seed
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
            signed = scale * self.scale_sign
            return symnoise(embeds, signed, self.seed, half="plus", backend=settings.backend, check_scale=False)
        x = embeds[:batch] if self.layout == "padded" else embeds[:, :tokens]  # the first copy
        # noise_scale's values are finite and >= 0 by construction: no check, which would sync with the device
        noisy = symnoise(x, scale, self.seed, backend=settings.backend, check_scale=False)  # (2, *x.shape)
        if self.layout == "packed":
            noisy = noisy.transpose(0, 1)  # (1, 2, T, d): the copies follow each other on the token dim
        return noisy.reshape(embeds.shape)


def micro_batch_seed(base_seed: int, global_step: int, micro_step: int, rank: int) -> int:
    """A seed in [0, 2**63) from (base seed, optimizer step, micro-step in the accumulation window, data-parallel
    rank): a 64-bit BLAKE2b digest of the four numbers."""
    words = struct.pack("<4Q", *(v & 0xFFFFFFFFFFFFFFFF for v in (base_seed, global_step, micro_step, rank)))
    return int.from_bytes(hashlib.blake2b(words, digest_size=8).digest(), "little") >> 1
