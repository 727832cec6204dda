"""A SymNoise training process for the preemption tests (tests/trainers/test_preemption.py), alone or as one rank of
torchrun: trains the tiny model for 10 optimizer steps (2 micro-batches of 2 each, 8 steps an epoch, a checkpoint
every 4), and writes its logged losses, noise seeds and final parameters to OUT/result<rank>.pt when training
returns.

    python signal_worker.py OUT [--two-pass] [--resume CHECKPOINT|true] [--wait-at STEP [--rank R]] [--hold]
                                [--pause-save STEP]

--resume true: the newest complete checkpoint in OUT (train(resume_from_checkpoint=True)).
--wait-at STEP: at the start of optimizer step STEP + 1, print "READY <pid>" and wait (up to 120 s) for a signal,
  so the parent signals this process in the middle of a step (with --rank, only that rank waits).
--hold: after the signal, stay in the step (up to 120 s) for a second one.
--pause-save STEP: in the checkpoint of step STEP, after the weights and before the optimizer state, print
  "SAVING <pid>" and sleep: the parent kills the process there.
"""

import argparse
import os
import sys
import time

import torch
from transformers import TrainerCallback

sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))  # tests/: helpers
from symnoise_trl import SaveOnSignalCallback, SymNoiseSFTConfig, SymNoiseSFTTrainer  # noqa: E402

from helpers import tiny  # noqa: E402


class WaitForSignal(TrainerCallback):
    def __init__(self, trainer, step, hold):
        self.trainer, self.step, self.hold = trainer, step, hold

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step != self.step:
            return
        watcher = next(c for c in self.trainer.callback_handler.callbacks if isinstance(c, SaveOnSignalCallback))
        print(f"READY {os.getpid()}", flush=True)
        deadline = time.monotonic() + 120
        while not watcher.received and time.monotonic() < deadline:
            time.sleep(0.01)
        if self.hold:
            time.sleep(120)  # a second SIGINT lands here


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--two-pass", action="store_true")
    parser.add_argument("--resume")
    parser.add_argument("--wait-at", type=int)
    parser.add_argument("--rank", type=int)
    parser.add_argument("--hold", action="store_true")
    parser.add_argument("--pause-save", type=int)
    options = parser.parse_args()
    torch.set_num_threads(1)
    args = tiny.train_args(
        SymNoiseSFTConfig, options.out, symnoise_alpha=5.0, symnoise_two_pass=options.two_pass, max_steps=10,
        per_device_train_batch_size=2, gradient_accumulation_steps=2, save_strategy="steps", save_steps=4,
    )  # fmt: skip
    trainer = SymNoiseSFTTrainer(model=tiny.model(), args=args, train_dataset=tiny.prompt_completion_dataset(),
                                 processing_class=tiny.tokenizer())  # fmt: skip
    seeds = tiny.record_seeds(trainer)
    rank = trainer.accelerator.process_index
    if options.wait_at is not None and options.rank in (None, rank):
        trainer.add_callback(WaitForSignal(trainer, options.wait_at, options.hold))
    if options.pause_save is not None:
        save_rng_state = trainer._save_rng_state

        def paused(output_dir):
            if trainer.state.global_step == options.pause_save:
                print(f"SAVING {os.getpid()}", flush=True)
                time.sleep(120)
            save_rng_state(output_dir)

        trainer._save_rng_state = paused
    trainer.train(resume_from_checkpoint=True if options.resume == "true" else options.resume)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    params = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
    torch.save({"losses": losses, "params": params, "step": trainer.state.global_step, "seeds": seeds},
               os.path.join(options.out, f"result{rank}.pt"))  # fmt: skip


if __name__ == "__main__":
    main()
