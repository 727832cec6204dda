"""Hand-made training batches as TRL's collators lay them out (padded, and padding-free with three sequences)."""

import torch


def packed_batch():
    # Three sequences of lengths 3, 2, 4 in one row, as TRL's padding-free collator lays them out.
    position_ids = torch.tensor([[0, 1, 2, 0, 1, 0, 1, 2, 3]])
    return {
        "input_ids": torch.arange(10, 19)[None],
        "labels": torch.tensor([[-100, 11, 12, -100, 14, -100, 16, 17, 18]]),
        "position_ids": position_ids,
        "cu_seq_lens_q": torch.tensor([0, 3, 5, 9], dtype=torch.int32),
        "cu_seq_lens_k": torch.tensor([0, 3, 5, 9], dtype=torch.int32),
        "max_length_q": 4,
        "max_length_k": 4,
        "seq_idx": torch.tensor([[0, 0, 0, 1, 1, 2, 2, 2, 2]]),
    }


def padded_batch():
    return {
        "input_ids": torch.tensor([[5, 6, 7, 0], [8, 9, 0, 0]]),
        "attention_mask": torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]]),
        "labels": torch.tensor([[-100, 6, 7, -100], [-100, 9, -100, -100]]),
        "use_cache": False,
    }
