"""Noise: the seed of each training micro-batch, and `MicroBatchSeeds`, the trainer's counter that draws them.

A micro-batch's seed is a hash of (base seed, optimizer step, micro-step within the accumulation window,
data-parallel rank): ranks never share noise, and a run resumed at a checkpoint (a step boundary) draws the noise of
an uninterrupted one.
"""

import hashlib
import struct
from typing import NamedTuple

import torch


def seed_digest(*values: int, person: bytes = b"") -> int:
    """A seed in [0, 2**63) from integers: a 64-bit BLAKE2b digest of them (`person` keeps one use's seeds apart from
    another's). Every bit of every value counts, unlike a sum or a shift that a 32-bit generator would truncate."""
    words = struct.pack(f"<{len(values)}Q", *(v & 0xFFFFFFFFFFFFFFFF for v in values))
    return int.from_bytes(hashlib.blake2b(words, digest_size=8, person=person).digest(), "little") >> 1


def micro_batch_seed(base_seed: int, global_step: int, micro_step: int, rank: int) -> int:
    """A seed in [0, 2**63) from (base seed, optimizer step, micro-step in the accumulation window, data-parallel
    rank): `seed_digest` of the four numbers."""
    return seed_digest(base_seed, global_step, micro_step, rank)


def seed_tensor(seed: int) -> torch.Tensor:
    """A checked seed as the op takes it: a 0-d int64 CPU tensor, made outside any compiled region, so that
    torch.compile of the forward sees an input rather than a new constant every step."""
    return torch.tensor(seed, dtype=torch.int64, device="cpu")


class MicroBatchDraw(NamedTuple):
    """The seed one training micro-batch used."""

    global_step: int  # the optimizer step it belongs to
    micro_step: int  # its place in that step's gradient-accumulation window, from 0
    seed: int


class MicroBatchSeeds:
    """The seeds of a trainer's micro-batches, for one base seed and data-parallel rank. `last` is the latest draw
    (None before the first): a callback can read it at `on_substep_end` / `on_step_end` to record every seed."""

    def __init__(self, base_seed: int, rank: int):
        self.base_seed, self.rank = base_seed, rank
        self.last: MicroBatchDraw | None = None

    def next(self, global_step: int) -> torch.Tensor:
        """The seed of the next micro-batch of optimizer step `global_step`, as the op's seed tensor."""
        # Micro-steps are counted within each optimizer step, so a resumed run (at a step boundary) starts at 0.
        last = self.last
        micro_step = last.micro_step + 1 if last is not None and last.global_step == global_step else 0
        seed = micro_batch_seed(self.base_seed, global_step, micro_step, self.rank)
        self.last = MicroBatchDraw(global_step, micro_step, seed)
        return seed_tensor(seed)
