"""The per-step SymNoise path (lengths, doubling, noise scale, the op's entry) reads nothing back from the device:
no tensor -> Python conversion that would synchronise a GPU on every training step. The op itself is stubbed, so
the test covers what runs around the kernel launch; a scale tensor given to the public op is still checked. (It sees
Python-level reads; a sync inside a torch kernel, like repeat_interleave sizing its output, shows only on a GPU.)"""

import pytest
import torch

import symnoise_trl.kernels.symnoise_op as op
from symnoise_trl.batch import NoisePlan, double_batch, token_lengths
from symnoise_trl.kernels import symnoise
from symnoise_trl.settings import SymNoiseSettings

from test_batch import packed_batch, padded_batch

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


@pytest.fixture
def stub_op(monkeypatch):
    def fake(x, scale, scale_value, seed, half, backend, check_scale):
        if scale is not None and check_scale:
            op._check_scale_values(scale)
        return x.new_zeros(((2,) if half == "both" else ()) + tuple(x.shape))

    monkeypatch.setattr(op, "_symnoise_op", fake)


@pytest.mark.parametrize("layout, make", [("padded", padded_batch), ("packed", packed_batch)])
@pytest.mark.parametrize("half, distribution", [("both", "symmetric"), ("plus", "symmetric"), ("both", "rademacher")])
def test_the_step_path_reads_nothing_back(stub_op, host_reads, layout, make, half, distribution):
    batch = make()
    settings = SymNoiseSettings(alpha=5.0, distribution=distribution)
    host_reads["n"] = 0
    lengths = token_lengths(batch, layout, settings.length)
    plan = NoisePlan(settings=settings, layout=layout, lengths=lengths, seed=7, half=half)
    inputs = double_batch(batch, layout) if plan.doubled else batch
    embeds = torch.zeros(*inputs["input_ids"].shape, 16)
    plan.apply(embeds)
    assert host_reads["n"] == 0


def test_the_counter_sees_the_check_of_a_caller_given_scale(stub_op, host_reads):
    x, scale = torch.zeros(4, 8), torch.full((4,), 0.1)
    host_reads["n"] = 0
    symnoise(x, scale, 3)
    assert host_reads["n"] >= 1  # the public op checks the values of a scale tensor it is given
    host_reads["n"] = 0
    symnoise(x, scale, 3, check_scale=False)
    assert host_reads["n"] == 0
    with pytest.raises(ValueError, match="scale must be finite and >= 0 on every row"):
        symnoise(x, torch.tensor([0.1, -1.0, 0.0, 0.0]), 3)
