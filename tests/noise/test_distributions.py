"""The ablation noises: first two moments, RMS matching at the same alpha, NEFTune equivalence, and no doubling."""

import math

import pytest
import torch
from transformers.integrations.neftune import neftune_post_forward_hook

from symnoise_trl import SymNoiseSFTConfig, SymNoiseSFTTrainer
from symnoise_trl.kernels import symnoise
from symnoise_trl.noise.one_sided import ONE_SIDED, one_sided_noise, unit_noise
from symnoise_trl.noise.plan import noise_scale
from symnoise_trl.noise.seeds import seed_tensor

from helpers import tiny

# Also run at the lowest versions pyproject.toml allows (scripts/test_floors.sh).
pytestmark = pytest.mark.floors

ROWS, DIM, ALPHA, LENGTH = 256, 4096, 5.0, 40


def noise_of(distribution, x, scale, seed=0):
    if distribution == "symmetric":
        return symnoise(x, scale, seed)[0] - x
    return one_sided_noise(x, scale, seed_tensor(seed), distribution) - x


@pytest.mark.parametrize("distribution", ["symmetric", *ONE_SIDED])
def test_mean_zero_and_rms_alpha_over_sqrt_3ld(distribution):
    x = torch.zeros(ROWS, DIM)
    scale = noise_scale(torch.full((ROWS,), float(LENGTH)), ALPHA, DIM)
    noise = noise_of(distribution, x, scale)
    n = noise.numel()
    rms = ALPHA / math.sqrt(3 * LENGTH * DIM)
    assert abs(noise.mean().item()) < 5 * rms / math.sqrt(n)
    assert noise.pow(2).mean().sqrt().item() == pytest.approx(rms, rel=0.01)
    if distribution in ("symmetric", "rademacher"):
        assert torch.allclose(noise.abs(), scale[:, None].expand_as(noise))
    if distribution == "uniform":
        assert noise.abs().max().item() <= math.sqrt(3) * rms * (1 + 1e-6)


@pytest.mark.parametrize("distribution", ONE_SIDED)
def test_unit_noise_is_what_one_sided_noise_adds_at_scale_one(distribution):
    # The research harness's fixed directions (research/sensitivity.py) are the training noise, not a lookalike.
    unit = unit_noise(distribution, 6, 200, seed=41)
    assert unit.dtype == torch.float32 and unit.shape == (6, 200)
    assert torch.equal(unit, noise_of(distribution, torch.zeros(6, 200), torch.ones(6), seed=41))
    assert not torch.equal(unit, unit_noise(distribution, 6, 200, seed=42))


def test_uniform_is_transformers_neftune():
    # NEFTune's hook: U(-alpha / sqrt(L d), alpha / sqrt(L d)) with L the padded length of (B, L, d).
    embeds = torch.zeros(8, LENGTH, DIM)
    module = torch.nn.Module()
    module.neftune_noise_alpha = ALPHA
    neftune = neftune_post_forward_hook(module, None, embeds)
    ours = one_sided_noise(
        embeds, noise_scale(torch.full((8, LENGTH), float(LENGTH)), ALPHA, DIM), seed_tensor(3), "uniform"
    )
    bound = ALPHA / math.sqrt(LENGTH * DIM)
    for noise in (neftune, ours):
        assert noise.abs().max().item() <= bound * (1 + 1e-6)
        assert noise.abs().max().item() > 0.999 * bound
    assert ours.pow(2).mean().item() == pytest.approx(neftune.pow(2).mean().item(), rel=0.01)


def test_padding_rows_stay_clean_and_seeds_repeat():
    x = torch.randn(4, 64)
    scale = torch.tensor([0.1, 0.0, 0.2, 0.0])
    for distribution in ONE_SIDED:
        out = one_sided_noise(x, scale, seed_tensor(7), distribution)
        assert torch.equal(out[1], x[1]) and torch.equal(out[3], x[3]) and not torch.equal(out[0], x[0])
        assert torch.equal(out, one_sided_noise(x, scale, seed_tensor(7), distribution))
        assert not torch.equal(out, one_sided_noise(x, scale, seed_tensor(8), distribution))


@pytest.mark.parametrize("distribution", ONE_SIDED)
def test_one_sided_training_keeps_the_batch(tmp_path, distribution):
    model = tiny.model()
    recorder = tiny.EmbeddingRecorder(model)
    args = tiny.train_args(SymNoiseSFTConfig, tmp_path, symnoise_alpha=ALPHA, symnoise_distribution=distribution,
                           max_steps=2)  # fmt: skip
    trainer = SymNoiseSFTTrainer(
        model=model, args=args, train_dataset=tiny.prompt_completion_dataset(), processing_class=tiny.tokenizer()
    )
    trainer.train()
    calls = [c for c in recorder.calls if c["training"]]
    assert len(calls) == 2
    for call in calls:
        assert call["raw"].shape[0] == 4  # not doubled
        assert not torch.equal(call["received"], call["raw"])
    plain = run_plain_token_counts(tmp_path)
    assert [h["num_tokens"] for h in trainer.state.log_history if "loss" in h] == plain


def run_plain_token_counts(tmp_path):
    from trl import SFTConfig, SFTTrainer

    args = tiny.train_args(SFTConfig, tmp_path / "plain", max_steps=2)
    data = tiny.prompt_completion_dataset()
    trainer = SFTTrainer(model=tiny.model(), args=args, train_dataset=data, processing_class=tiny.tokenizer())
    trainer.train()
    return [h["num_tokens"] for h in trainer.state.log_history if "loss" in h]


def test_config_checks_the_distribution():
    with pytest.raises(ValueError, match="`symnoise_distribution` must be one of"):
        SymNoiseSFTConfig(output_dir="o", bf16=False, symnoise_alpha=5.0, symnoise_distribution="laplace")
    with pytest.raises(ValueError, match="`symnoise_two_pass` splits the two SymNoise copies"):
        SymNoiseSFTConfig(output_dir="o", bf16=False, symnoise_alpha=5.0, symnoise_distribution="uniform",
                          symnoise_two_pass=True)  # fmt: skip
