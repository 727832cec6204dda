"""The per-step SymNoise path (lengths, doubling, noise scale, the op's entry) reads nothing back from the device:
no tensor -> Python conversion that would synchronise a GPU on every training step. It runs on the meta device, where
the op runs its shape-only implementation, so the test covers what runs around the kernel launch. (It sees
Python-level reads; a sync inside a torch kernel, like repeat_interleave sizing its output, shows only on a GPU.)"""

import pytest
import torch

from symnoise_trl import SymNoiseHook, SymNoiseSettings
from symnoise_trl.noise.seeds import seed_tensor

from helpers.batches import packed_batch, padded_batch

CONVERSIONS = ("__bool__", "item", "__int__", "__float__", "__index__", "tolist")


@pytest.fixture
def host_reads(monkeypatch):
    """Counts every tensor -> Python conversion while the test runs."""
    count = {"n": 0}
    for name in CONVERSIONS:
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, **kwargs):
            count["n"] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    return count


@pytest.mark.parametrize("layout, make", [("padded", padded_batch), ("packed", packed_batch)])
@pytest.mark.parametrize("half, distribution", [("both", "symmetric"), ("plus", "symmetric"), ("both", "rademacher")])
def test_the_step_path_reads_nothing_back(host_reads, layout, make, half, distribution):
    # On the meta device: tensors without values, so any read of one would raise, and the op runs its shape-only
    # (fake) implementation, which leaves exactly the path around the kernel launch to count.
    batch = {k: v.to("meta") if isinstance(v, torch.Tensor) else v for k, v in make().items()}
    hook = SymNoiseHook(SymNoiseSettings(alpha=5.0, distribution=distribution))
    seed = seed_tensor(7)
    host_reads["n"] = 0
    with hook.armed(batch, seed, half) as inputs:
        out = hook(None, (), torch.zeros(*inputs["input_ids"].shape, 16, device="meta"))
    assert host_reads["n"] == 0
    assert out.shape == (*inputs["input_ids"].shape, 16)


def test_the_counter_sees_a_read(host_reads):
    # The assertion above must be able to fail: the reads this counter sees are those a GPU would sync on.
    host_reads["n"] = 0
    assert bool(torch.ones(1)) and torch.ones(2).sum().item() == 2.0
    assert host_reads["n"] == 2
