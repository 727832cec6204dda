"""Batch doubling, per-token lengths, noise scale and micro-batch seeds, on hand-made batches."""

import math

import pytest
import torch

from symnoise_trl.noise.batch import batch_layout, double_batch, token_lengths
from symnoise_trl.noise.plan import noise_scale
from symnoise_trl.noise.seeds import micro_batch_seed

from helpers.batches import packed_batch, padded_batch

# Also run at the lowest versions pyproject.toml allows (scripts/test_floors.sh).
pytestmark = pytest.mark.floors


def test_layouts():
    assert batch_layout(padded_batch()) == "padded"
    assert batch_layout(packed_batch()) == "packed"
    no_cu = {k: v for k, v in packed_batch().items() if not k.startswith("cu_")}
    assert batch_layout(no_cu) == "packed"
    with pytest.raises(ValueError, match="input_ids"):
        batch_layout({"inputs_embeds": torch.zeros(1, 2, 3)})


def test_double_padded_batch():
    batch = padded_batch()
    doubled = double_batch(batch, "padded")
    for key in ("input_ids", "attention_mask", "labels"):
        assert torch.equal(doubled[key], torch.cat([batch[key], batch[key]]))
    assert doubled["use_cache"] is False


def test_double_packed_batch():
    doubled = double_batch(packed_batch(), "packed")
    assert torch.equal(doubled["input_ids"], torch.cat([torch.arange(10, 19)] * 2)[None])
    assert doubled["position_ids"].tolist() == [[0, 1, 2, 0, 1, 0, 1, 2, 3] * 2]
    assert doubled["cu_seq_lens_q"].tolist() == [0, 3, 5, 9, 12, 14, 18]
    assert doubled["cu_seq_lens_k"].dtype == torch.int32
    assert doubled["seq_idx"].tolist() == [[0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 3, 3, 4, 4, 5, 5, 5, 5]]
    assert doubled["max_length_q"] == 4  # the longest sequence is the same


def test_unknown_tensor_keys_fail_loudly():
    # Molmo2's pooling indices point into the flattened patches: doubled on dim 0 without an offset, they'd be wrong.
    with pytest.raises(ValueError, match="does not know how to double the batch key 'image_token_pooling'") as error:
        double_batch({**padded_batch(), "image_token_pooling": torch.zeros(2, 8, 4, dtype=torch.int64)}, "padded")
    assert "\n" not in str(error.value)


def test_media_inputs_are_given_twice_on_dim_0():
    # Per image (LLaVA, Gemma 4's positions), per flattened patch with a grid per image or video (Qwen2-VL), per
    # example (Idefics3), per frame and per video (Gemma 4), per audio clip: the copies' inputs follow each other in
    # the order of the doubled rows' placeholder tokens.
    vision = {
        "pixel_values": torch.randn(3, 2, 3, 8, 8),
        "pixel_attention_mask": torch.ones(3, 2, 8, 8, dtype=torch.bool),
        "image_grid_thw": torch.tensor([[1, 2, 2], [1, 2, 4]]),
        "image_position_ids": torch.randint(0, 4, (2, 9, 2)),
        "mm_token_type_ids": torch.tensor([[0, 1, 1, 0], [0, 0, 0, 0]]),
        "second_per_grid_ts": [1.0, 2.0],
        "pixel_values_videos": torch.randn(3, 9, 48),
        "video_position_ids": torch.randint(0, 4, (3, 9, 2)),
        "num_frames_per_video": torch.tensor([2, 1]),
        "input_features": torch.randn(2, 30, 128),
        "input_features_mask": torch.ones(2, 30, dtype=torch.bool),
    }
    doubled = double_batch({**padded_batch(), **vision}, "padded")
    for key, value in vision.items():
        expected = value * 2 if isinstance(value, list) else torch.cat([value, value])
        assert (doubled[key] == expected) if isinstance(value, list) else torch.equal(doubled[key], expected), key
    assert double_batch({**padded_batch(), "pixel_values": None}, "padded")["pixel_values"] is None  # no images


def test_multipack_rows_give_each_packed_sequence_its_own_length():
    # Axolotl's sample packing: several sequences per row, numbered 1, 2, ... in the attention mask, 0 = padding.
    batch = {
        "input_ids": torch.arange(16).reshape(2, 8),
        "attention_mask": torch.tensor([[1, 1, 1, 2, 2, 3, 0, 0], [1, 1, 1, 1, 2, 2, 2, 2]]),
        "position_ids": torch.tensor([[0, 1, 2, 0, 1, 0, 0, 0], [0, 1, 2, 3, 0, 1, 2, 3]]),
    }
    assert batch_layout(batch) == "padded"
    assert token_lengths(batch, "padded").tolist() == [[3, 3, 3, 2, 2, 1, 0, 0], [4, 4, 4, 4, 4, 4, 4, 4]]
    assert token_lengths(batch, "padded", "sequence", (1, 12)).tolist() == [
        [2, 0, 2, 2, 2, 1, 0, 0], [4, 4, 4, 4, 0, 3, 3, 3]
    ]  # fmt: skip


def test_rows_of_packed_sequences_without_numbered_masks():
    # Packed rows marked only by position_ids (a mask of ones, or none: Axolotl's older collator, or flash-attention
    # batches), with flat cu_seq_lens over all B x T tokens.
    position_ids = torch.tensor([[0, 1, 2, 0, 1, 0], [0, 1, 2, 3, 0, 1]])
    batch = {"input_ids": torch.arange(12).reshape(2, 6), "position_ids": position_ids,
             "cu_seq_lens_q": torch.tensor([0, 3, 5, 6, 10, 12], dtype=torch.int32)}  # fmt: skip
    batch["cu_seq_lens_k"] = batch["cu_seq_lens_q"].clone()
    assert batch_layout(batch) == "padded"  # B > 1: each row is doubled as a row
    expected = [[3, 3, 3, 2, 2, 1], [4, 4, 4, 4, 2, 2]]
    assert token_lengths(batch, "padded").tolist() == expected
    with_ones = {**batch, "attention_mask": torch.ones(2, 6, dtype=torch.long)}
    assert token_lengths(with_ones, "padded").tolist() == expected
    doubled = double_batch(batch, "padded")
    assert torch.equal(doubled["position_ids"], torch.cat([position_ids] * 2))
    assert doubled["cu_seq_lens_q"].tolist() == [0, 3, 5, 6, 10, 12, 15, 17, 18, 22, 24]
    assert doubled["cu_seq_lens_k"].tolist() == doubled["cu_seq_lens_q"].tolist()


def test_empty_sequences_in_cu_seq_lens_do_not_overflow():
    packed = {**packed_batch(), "cu_seq_lens_q": torch.tensor([0, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 5, 9])}
    assert token_lengths(packed, "packed").tolist() == [[3, 3, 3, 2, 2, 4, 4, 4, 4]]


def test_placeholder_tokens_get_no_noise_and_do_not_count_in_the_length():
    batch = padded_batch()  # input_ids [[5, 6, 7, pad], [8, 9, pad, pad]], real lengths 3 and 2
    image = batch["input_ids"][0, 1].item()
    assert token_lengths(batch, "padded", "sequence", (image,)).tolist() == [[2, 0, 2, 0], [2, 2, 0, 0]]
    assert token_lengths(batch, "padded", "padded", (image,)).tolist() == [[4, 0, 4, 4], [4, 4, 4, 4]]
    packed = packed_batch()  # input_ids 10..18 in sequences of 3, 2 and 4 tokens
    assert token_lengths(packed, "packed", "sequence", (11, 16)).tolist() == [[2, 0, 2, 2, 2, 3, 0, 3, 3]]
    no_cu = {k: v for k, v in packed.items() if not k.startswith("cu_")}
    assert token_lengths(no_cu, "packed", "sequence", (11, 16)).tolist() == [[2, 0, 2, 2, 2, 3, 0, 3, 3]]


def test_token_lengths():
    padded = token_lengths(padded_batch(), "padded", "sequence")
    assert padded.tolist() == [[3, 3, 3, 0], [2, 2, 0, 0]]
    assert token_lengths(padded_batch(), "padded", "padded").tolist() == [[4] * 4] * 2
    expected = [[3, 3, 3, 2, 2, 4, 4, 4, 4]]
    assert token_lengths(packed_batch(), "packed", "sequence").tolist() == expected
    no_cu = {k: v for k, v in packed_batch().items() if not k.startswith("cu_")}
    assert token_lengths(no_cu, "packed", "sequence").tolist() == expected  # from position_ids
    assert token_lengths(packed_batch(), "packed", "padded").tolist() == [[9] * 9]


def test_noise_scale():
    scale = noise_scale(torch.tensor([[3.0, 0.0]]), alpha=5.0, dim=64)
    assert scale.dtype == torch.float32
    assert scale[0, 0].item() == pytest.approx(5 / math.sqrt(3 * 3 * 64), rel=1e-7)
    assert scale[0, 1].item() == 0.0


def test_micro_batch_seeds_differ_and_repeat():
    seeds = {micro_batch_seed(0, step, micro, rank) for step in range(4) for micro in range(3) for rank in range(2)}
    assert len(seeds) == 24 and all(0 <= s < 2**63 for s in seeds)
    assert micro_batch_seed(7, 3, 1, 0) == micro_batch_seed(7, 3, 1, 0)
    assert micro_batch_seed(7, 3, 1, 0) != micro_batch_seed(8, 3, 1, 0)
