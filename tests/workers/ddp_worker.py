"""One rank of the two-process DDP test (run by torchrun): trains a few SymNoise steps in the one-pass and the
two-pass mode and saves what it saw, including how many gradient all-reduces DDP ran."""

import os
import sys

import torch
from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook
from transformers import TrainerCallback

sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))  # tests/: helpers
from symnoise_trl import SymNoiseSFTConfig, SymNoiseSFTTrainer, SymNoiseTrainer, SymNoiseTrainingArguments  # noqa: E402

from helpers import tiny  # noqa: E402


class RecordingTrainer(SymNoiseSFTTrainer):
    """Records the noise seeds and counts the DDP gradient buckets all-reduced."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.allreduces = 0
        self.add_callback(CountAllReduces(self))
        self.seeds = tiny.record_seeds(self)


class CountAllReduces(TrainerCallback):
    def __init__(self, trainer):
        self.trainer = trainer

    def on_train_begin(self, args, state, control, **kwargs):
        def counting_allreduce(trainer, bucket):
            trainer.allreduces += 1
            return allreduce_hook(None, bucket)

        self.trainer.model_wrapped.register_comm_hook(self.trainer, counting_allreduce)


def train(out_dir, two_pass):
    model = tiny.model()
    recorder = tiny.EmbeddingRecorder(model)
    args = tiny.train_args(
        SymNoiseSFTConfig, out_dir, symnoise_alpha=5.0, symnoise_two_pass=two_pass, max_steps=2,
        per_device_train_batch_size=2, gradient_accumulation_steps=2, optim="sgd", learning_rate=0.05,
    )  # fmt: skip
    trainer = RecordingTrainer(
        model=model, args=args, train_dataset=tiny.prompt_completion_dataset(), processing_class=tiny.tokenizer()
    )
    trainer.train()
    first = [c for c in recorder.calls if c["training"]][0]
    half = first["raw"].shape[0] if two_pass else first["raw"].shape[0] // 2
    return {
        "world_size": trainer.accelerator.num_processes,
        "seeds": trainer.seeds,
        "allreduces": trainer.allreduces,
        "signs": torch.sign(first["received"][:half] - first["raw"][:half]),
        "params": {n: p.detach().clone() for n, p in trainer.model.named_parameters()},
    }


def train_plain(out_dir):
    """transformers' Trainer with SymNoise: the seeds each rank draws, and the parameters it ends with."""
    args = SymNoiseTrainingArguments(output_dir=os.path.join(out_dir, "plain"), per_device_train_batch_size=2,
                                     max_steps=2, report_to="none", use_cpu=True, save_strategy="no", seed=0,
                                     disable_tqdm=True, symnoise_alpha=5.0)  # fmt: skip
    trainer = SymNoiseTrainer(model=tiny.model(), args=args, train_dataset=tiny.tokenized(prompt_labels=True),
                              data_collator=tiny.COLLATORS["padding_with_labels"]())  # fmt: skip
    seeds = tiny.record_seeds(trainer)
    trainer.train()
    return {"world_size": trainer.accelerator.num_processes, "seeds": seeds,
            "params": {n: p.detach().clone() for n, p in trainer.model.named_parameters()}}  # fmt: skip


def main(out_dir):
    results = {mode: train(out_dir, mode == "two_pass") for mode in ("one_pass", "two_pass")}
    results["plain_trainer"] = train_plain(out_dir)
    rank = int(os.environ["RANK"])
    torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    if torch.distributed.is_initialized():  # torn down before exit, as deepspeed_worker.py says why
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
