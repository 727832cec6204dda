"""One rank of the two-process DDP test (run by torchrun): trains a few SymNoise steps and saves what it saw."""

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from symnoise_trl import SymNoiseSFTConfig, SymNoiseSFTTrainer  # noqa: E402

import tiny  # noqa: E402


class SeedRecordingTrainer(SymNoiseSFTTrainer):
    seeds = []

    def _next_symnoise_seed(self):
        seed = super()._next_symnoise_seed()
        self.seeds.append((self.state.global_step, seed))
        return seed


def main(out_dir):
    model = tiny.model()
    recorder = tiny.EmbeddingRecorder(model)
    args = tiny.train_args(SymNoiseSFTConfig, out_dir, symnoise_alpha=5.0, max_steps=2, per_device_train_batch_size=2)
    trainer = SeedRecordingTrainer(
        model=model, args=args, train_dataset=tiny.prompt_completion_dataset(), processing_class=tiny.tokenizer()
    )
    trainer.train()
    first = [c for c in recorder.calls if c["training"]][0]
    half = first["raw"].shape[0] // 2
    torch.save(
        {
            "world_size": trainer.accelerator.num_processes,
            "seeds": SeedRecordingTrainer.seeds,
            "signs": torch.sign(first["received"][:half] - first["raw"][:half]),
            "params": {n: p.detach().clone() for n, p in trainer.model.named_parameters()},
        },
        os.path.join(out_dir, f"rank{trainer.accelerator.process_index}.pt"),
    )


if __name__ == "__main__":
    main(sys.argv[1])
