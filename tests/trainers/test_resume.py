"""Resuming from a checkpoint draws the noise of an uninterrupted run and ends with the same parameters."""

import pytest
import torch

from symnoise_trl import SymNoiseSFTConfig, SymNoiseSFTTrainer

from helpers import tiny

# Also run at the lowest versions pyproject.toml allows (scripts/test_floors.sh).
pytestmark = pytest.mark.floors


def trainer_for(output_dir):
    args = tiny.train_args(
        SymNoiseSFTConfig, output_dir, symnoise_alpha=5.0, max_steps=4, gradient_accumulation_steps=2,
        per_device_train_batch_size=2, save_strategy="steps", save_steps=2,
    )  # fmt: skip
    data = tiny.prompt_completion_dataset()
    trainer = SymNoiseSFTTrainer(model=tiny.model(), args=args, train_dataset=data, processing_class=tiny.tokenizer())
    return trainer, tiny.record_seeds(trainer)


def test_resumed_run_matches_uninterrupted_run(tmp_path):
    full, full_seeds = trainer_for(tmp_path / "full")
    full.train()
    assert [step for step, _ in full_seeds] == [0, 0, 1, 1, 2, 2, 3, 3]  # two micro-batches per step
    assert len({seed for _, seed in full_seeds}) == 8

    resumed, resumed_seeds = trainer_for(tmp_path / "resumed")
    resumed.train(resume_from_checkpoint=str(tmp_path / "full" / "checkpoint-2"))
    assert resumed_seeds == full_seeds[4:]
    for (name, a), (_, b) in zip(full.model.named_parameters(), resumed.model.named_parameters(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-7, msg=name)
