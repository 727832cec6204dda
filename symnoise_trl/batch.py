"""Core: SymNoise's view of a training batch: its layout, the per-token L of the noise scale, and its doubling.

Two layouts, as TRL's collators produce them:
- padded: per-example tensors of shape (B, L, ...); doubled on the batch dim to (2B, L, ...).
- packed (padding-free or packing with position ids, B = 1): per-token tensors (1, T); doubled on the token dim to
  (1, 2T) with `cu_seq_lens_*` and `seq_idx` extended, so a varlen attention kernel sees 2x the sequences and no
  sequence crosses the two copies.
Pure torch: no transformers or TRL imports.
"""

import torch

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
