"""Noise: SymNoise's view of a training batch: its layout, the per-token L of the noise scale, and its doubling.

Two layouts, as TRL's and Axolotl's collators produce them:
- padded: per-example tensors of shape (B, T, ...); doubled on the batch dim to (2B, T, ...). A row holds one
  sequence, or several packed ones (Axolotl's multipack sample packing): a sequence is a run of tokens with one
  attention-mask value (Axolotl numbers them 1, 2, ...) that starts where `position_ids` restart at 0. Flat
  `cu_seq_lens_*` over the B x T tokens (Axolotl's flash-attention batches) are extended to the 2B x T tokens.
- packed (padding-free or packing with position ids, B = 1): per-token tensors (1, T); doubled on the token dim to
  (1, 2T) with `cu_seq_lens_*` and `seq_idx` extended, so a varlen attention kernel sees 2x the sequences and no
  sequence crosses the two copies.
Image, video and audio inputs of multimodal batches (TRL's `DataCollatorForVisionLanguageModeling`, or a processor's
output) index images, frames, clips or examples in the order of the placeholder tokens in `input_ids`: they are given
twice on dim 0 in either layout, so the model fills the placeholders of each copy with the same features. A key not
named here is refused by name: doubling it on the wrong dim would train on a silently wrong batch.
Pure torch: no transformers or TRL imports.
"""

import torch

# Tensors that hold one value per example (padded) or per token (packed): these are duplicated.
PER_TOKEN_KEYS = frozenset(
    {"input_ids", "labels", "shift_labels", "attention_mask", "position_ids", "completion_mask", "assistant_masks",
     "token_type_ids", "mm_token_type_ids"}
)  # fmt: skip
PACKED_KEYS = frozenset({"cu_seq_lens_q", "cu_seq_lens_k", "seq_idx"})
# Image, video and audio inputs (`MEDIA_KEYS`), as transformers' processors emit them for the families TRL trains.
# Each holds one entry per image, video frame, video or audio clip, in the order of their placeholder tokens in
# `input_ids`, or one per example: all are given twice on dim 0, so the second copy's placeholders get the same
# features as the first's. By what dim 0 counts:
MEDIA_KEYS = frozenset(
    {
        # per image: LLaVA, LLaVA-NeXT (n_images, n_crops, C, H, W), Gemma 3, Gemma 4 (patch rows); per example:
        # Idefics3 and SmolVLM (B, max_images, C, H, W); per flattened patch in image order: the Qwen VL families
        "pixel_values",
        "pixel_attention_mask",  # Idefics3, SmolVLM: per example
        "image_sizes",  # LLaVA-NeXT: per image
        "image_grid_thw",  # Qwen2-VL, Qwen2.5-VL, Qwen3-VL, Qwen3.5: per image
        "image_position_ids",  # Gemma 4: (n_images, max_patches, 2)
        "pixel_values_videos",  # Qwen: per flattened patch; Gemma 4: per frame
        "video_grid_thw",  # Qwen: per video
        "second_per_grid_ts",  # Qwen2.5-VL: per video (a tensor, or a list)
        "video_position_ids",  # Gemma 4: per frame
        "num_frames_per_video",  # Gemma 4: per video
        "input_features",  # Gemma 4 (and Gemma 3n's processor): per audio clip (n_clips, frames, mel)
        "input_features_mask",  # Gemma 4 (and Gemma 3n's processor): per audio clip
    }
)


def batch_layout(inputs: dict) -> str:
    """ "packed" for one row of concatenated sequences (padding-free: `cu_seq_lens_q`, or `position_ids` without an
    attention mask, B = 1), else "padded"."""
    if "input_ids" not in inputs:
        raise ValueError("SymNoise needs `input_ids` in the batch (it noises the embeddings of those tokens)")
    varlen = "cu_seq_lens_q" in inputs or ("attention_mask" not in inputs and "position_ids" in inputs)
    return "packed" if varlen and inputs["input_ids"].shape[0] == 1 else "padded"


def token_lengths(
    inputs: dict, layout: str, length: str = "sequence", placeholder_ids: tuple[int, ...] = ()
) -> torch.Tensor:
    """Per-token L of the noise scale, shaped like `input_ids`: 0 where a token gets no noise (padding, and the
    `placeholder_ids`: image, video or audio tokens whose embeddings the model replaces).

    `length="sequence"`: the number of text tokens (real tokens that are not placeholders) of the sequence the token
    belongs to (the module docstring says where sequences start). `length="padded"`: the padded length of the batch
    for every text token, padding included (L of transformers' NEFTune hook).
    """
    input_ids = inputs["input_ids"]
    text = torch.ones(input_ids.shape, dtype=torch.bool, device=input_ids.device)
    for token_id in placeholder_ids:  # NOTE: compared as Python ints: no id tensor is copied to the device
        text &= input_ids != token_id
    if length == "padded":
        return torch.where(text, float(input_ids.shape[1]), 0.0).to(torch.float32)
    # NOTE: cumsum, searchsorted, scatter_add and indexing keep this on the device: repeat_interleave by lengths or
    # bincount would read values back to the host to size their outputs, a sync on every training step.
    batch, width = input_ids.shape
    if layout == "packed" and "cu_seq_lens_q" in inputs:  # one row; its sequences are [cu[i], cu[i+1])
        cu = inputs["cu_seq_lens_q"].to(device=input_ids.device, dtype=torch.int64)
        positions = torch.arange(width, device=input_ids.device)
        sequence = torch.searchsorted(cu[1:], positions, right=True).clamp(max=cu.numel() - 2)[None]
        n_sequences = max(width, cu.numel())  # empty sequences in cu_seq_lens are numbered too
    else:
        mask = inputs.get("attention_mask")
        if mask is None:
            mask = torch.ones_like(input_ids)
        text &= mask != 0
        # A sequence starts at a row's first token, where the mask value changes (padding, or Axolotl's next packed
        # sequence) and where position_ids restart at 0 (packed rows with a mask of ones, or none); sequences are
        # numbered across rows.
        starts = torch.ones_like(text)
        starts[:, 1:] = mask[:, 1:] != mask[:, :-1]
        positions = inputs.get("position_ids")
        if positions is not None and positions.shape == input_ids.shape:  # not Qwen2-VL's 3-D rope positions
            starts |= positions.to(input_ids.device) == 0
        sequence = torch.cumsum(starts, dim=1) - 1 + torch.arange(batch, device=input_ids.device)[:, None] * width
        n_sequences = batch * width
    counts = torch.zeros(n_sequences, dtype=torch.int64, device=input_ids.device)
    counts.scatter_add_(0, sequence.flatten(), text.flatten().to(torch.int64))
    return (counts[sequence] * text).to(torch.float32)


def double_batch(inputs: dict, layout: str) -> dict:
    """The batch with every per-example (padded) or per-token (packed) tensor, and every vision input, given twice.
    Other values (flags, None) pass as is."""
    n_tokens = inputs["input_ids"].shape[1]
    # Flat cu_seq_lens index the flattened tokens: the second copy starts after all T (packed) or B x T (padded).
    offset = n_tokens if layout == "packed" else inputs["input_ids"].numel()
    doubled = {}
    for key, value in inputs.items():
        if key in MEDIA_KEYS and value is not None:  # a tensor, or a list (a processor's second_per_grid_ts)
            doubled[key] = torch.cat([value, value]) if isinstance(value, torch.Tensor) else list(value) * 2
        elif not isinstance(value, torch.Tensor):
            doubled[key] = value  # use_cache, max_length_q/k, ...
        elif key in PER_TOKEN_KEYS:
            doubled[key] = torch.cat([value, value], dim=0 if layout == "padded" else 1)
        elif key in ("cu_seq_lens_q", "cu_seq_lens_k"):
            doubled[key] = torch.cat([value, value[1:] + offset])
        elif key == "seq_idx":
            doubled[key] = torch.cat([value, value + value.max() + 1], dim=1 if layout == "packed" else 0)
        else:
            raise ValueError(
                f"SymNoise does not know how to double the batch key {key!r} (layout {layout!r}); it doubles the "
                f"keys {sorted(PER_TOKEN_KEYS | PACKED_KEYS | MEDIA_KEYS)}"
            )
    return doubled
