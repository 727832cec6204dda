"""Resuming from a checkpoint draws the noise of an uninterrupted run and ends with the same parameters."""

import torch

from symnoise_trl import SymNoiseSFTConfig, SymNoiseSFTTrainer

import tiny


class SeedRecordingTrainer(tiny.RecordSeeds, SymNoiseSFTTrainer):
    pass


def trainer_for(output_dir):
    args = tiny.train_args(
        SymNoiseSFTConfig, output_dir, symnoise_alpha=5.0, max_steps=4, gradient_accumulation_steps=2,
        per_device_train_batch_size=2, save_strategy="steps", save_steps=2,
    )  # fmt: skip
    data = tiny.prompt_completion_dataset()
    return SeedRecordingTrainer(model=tiny.model(), args=args, train_dataset=data, processing_class=tiny.tokenizer())


def test_resumed_run_matches_uninterrupted_run(tmp_path):
    full = trainer_for(tmp_path / "full")
    full.train()
    assert [step for step, _ in full.seeds] == [0, 0, 1, 1, 2, 2, 3, 3]  # two micro-batches per step
    assert len({seed for _, seed in full.seeds}) == 8

    resumed = trainer_for(tmp_path / "resumed")
    resumed.train(resume_from_checkpoint=str(tmp_path / "full" / "checkpoint-2"))
    assert resumed.seeds == full.seeds[4:]
    for (name, a), (_, b) in zip(full.model.named_parameters(), resumed.model.named_parameters(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-7, msg=name)
