"""One rank of the DeepSpeed ZeRO-2 test (run by torchrun on CPU): trains SymNoise a few steps, or tries the two-pass
mode, and saves the seeds it drew and the parameters it ended with (or the refusal)."""

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))  # tests/: helpers
from symnoise_trl import SymNoiseSFTConfig, SymNoiseSFTTrainer  # noqa: E402

from helpers import tiny  # noqa: E402

ZERO2 = {"train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": "auto",
         "zero_optimization": {"stage": 2}}  # fmt: skip


def main(out_dir, mode):
    args = tiny.train_args(SymNoiseSFTConfig, os.path.join(out_dir, mode), symnoise_alpha=5.0, max_steps=2,
                           per_device_train_batch_size=2, deepspeed=ZERO2,
                           symnoise_two_pass=mode == "two_pass")  # fmt: skip
    try:
        trainer = SymNoiseSFTTrainer(model=tiny.model(), args=args, train_dataset=tiny.prompt_completion_dataset(),
                                     processing_class=tiny.tokenizer())  # fmt: skip
        seeds = tiny.record_seeds(trainer)
        trainer.train()
        result = {
            "seeds": seeds,
            "params": {n: p.detach().clone() for n, p in trainer.model.named_parameters()},
        }
    except ValueError as error:
        result = {"refused": str(error)}
    torch.save(result, os.path.join(out_dir, f"{mode}_rank{os.environ['RANK']}.pt"))
    # NOTE: both ranks saved, then the gloo group is torn down before the interpreter exits: left to exit, its threads
    # were once destroyed still running ("terminate called without an active exception", rank 1 aborted; CI,
    # 2026-12-04).
    if torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
