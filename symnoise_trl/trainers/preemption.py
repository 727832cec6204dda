"""Trainers: stopping a run at a signal with a checkpoint (`SaveOnSignalCallback`), and checkpoints that appear whole.

Preemptible GPUs and Slurm send SIGTERM, then kill. transformers' Trainer saves nothing on a signal: the steps since
the last checkpoint are lost, and a kill during a save leaves a `checkpoint-N` folder that `resume` then picks.

- `SaveOnSignalCallback`: SIGTERM, or a first SIGINT (Ctrl-C), during `train()` lets the optimizer step in progress
  finish, saves a checkpoint there, prints one line naming it and how to resume, and exits 128 + the signal's number
  (143, 130). A second SIGINT stops at once. Under data parallelism the ranks agree after every optimizer step (one
  all-reduce of an int), so all stop at the same step whichever rank got the signal. Any `Trainer` takes it as a
  callback; `SymNoiseSFTTrainer` and `SymNoiseTrainer` add it for `train()` unless `save_on_signal=False`.
- `staged_checkpoint`: the trainers write each checkpoint under a staging folder and rename it to `checkpoint-N`
  when every rank has written its part, so a checkpoint folder is complete or absent.
- `resume_folder`: `train(resume_from_checkpoint=True)` of the trainers takes the newest complete checkpoint, and
  says which newer folders it skipped (transformers' takes the newest `checkpoint-N`, whole or not).
"""

import os
import shutil
import signal
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from transformers import TrainerCallback

from ..hf.checkpoint_files import CHECKPOINT_PREFIX, STAGING_PREFIX, newest_complete_checkpoint
from ..hf.internals import checkpoint_run_dir, checkpoint_written_under

SIGNAL_NAMES = {signal.SIGTERM: "SIGTERM", signal.SIGINT: "SIGINT"}


@dataclass
class SaveOnSignalArguments:
    """The `save_on_signal` field, mixed into `SymNoiseSFTConfig` and `SymNoiseTrainingArguments`."""

    save_on_signal: bool = field(
        default=True,
        metadata={
            "help": "On SIGTERM (preemption, Slurm) or a first Ctrl-C during training: finish the optimizer step, "
            "save a checkpoint there, say how to resume, and exit 143 (SIGTERM) or 130 (SIGINT); a second Ctrl-C "
            "stops at once. False leaves signals to Python's defaults."
        },
    )


class SaveOnSignalCallback(TrainerCallback):
    """Stop training at SIGTERM or a first SIGINT with a checkpoint at the end of the step in progress, then exit
    128 + the signal's number. Add it to any `Trainer` (`callbacks=[SaveOnSignalCallback()]`). The handlers are
    installed for the duration of `train()`, in the main thread only (Python runs signal handlers there), and put
    back when it ends (`restore_signal_handlers`)."""

    def __init__(self):
        self.received = 0  # the first signal's number, 0 before one
        self.stopped = 0  # the signal the ranks stopped at
        self._previous = {}

    def _handle(self, signum, frame):
        if self.received and signum == signal.SIGINT:  # the second Ctrl-C: stop now
            self.restore_signal_handlers()
            raise KeyboardInterrupt
        if not self.received:
            self.received = signum
            print(
                f"{SIGNAL_NAMES[signum]}: finishing this optimizer step, then saving a checkpoint "
                "(Ctrl-C stops at once)",
                file=sys.stderr,
                flush=True,
            )

    def restore_signal_handlers(self):
        """Put back the handlers `train()` replaced: `on_train_end` does, but a `train()` that raises never gets
        there (the SymNoise trainers call this then; with another Trainer, call it after such an exception)."""
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def on_train_begin(self, args, state, control, **kwargs):
        self.received = self.stopped = 0
        if threading.current_thread() is threading.main_thread():
            self._previous = {signum: signal.signal(signum, self._handle) for signum in SIGNAL_NAMES}

    def on_step_end(self, args, state, control, **kwargs):
        signum = _agreed(self.received)
        if signum:
            self.stopped = signum
            control.should_save = True  # whatever save_strategy says: the Trainer saves, then stops
            control.should_training_stop = True

    def on_train_end(self, args, state, control, **kwargs):
        self.restore_signal_handlers()
        if not self.stopped:
            return
        checkpoint = os.path.join(args.output_dir, f"{CHECKPOINT_PREFIX}{state.global_step}")
        if state.is_world_process_zero:
            print(
                f"Stopped by {SIGNAL_NAMES.get(self.stopped, self.stopped)} after step {state.global_step}: saved "
                f"{checkpoint}. Resume with --resume_from_checkpoint {checkpoint} (symnoise-sft: or true), or "
                f"trainer.train(resume_from_checkpoint={checkpoint!r})",
                flush=True,
            )
        raise SystemExit(128 + self.stopped)


def _agreed(received: int) -> int:
    """The largest signal number any rank received (0: none); `received` itself without a process group."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return received
    if torch.distributed.get_world_size() == 1:
        return received
    device = torch.device("cpu")
    if "nccl" in str(torch.distributed.get_backend()):
        device = torch.device("cuda", torch.cuda.current_device())
    flag = torch.tensor([received], dtype=torch.int64, device=device)
    torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
    return int(flag.item())


def resume_folder(trainer, value):
    """`resume_from_checkpoint` as `Trainer.train` should take it: True becomes the newest complete checkpoint in
    `output_dir` (a ValueError when there is none); anything else is left to the Trainer."""
    if value is not True:
        return value
    folder, skipped = newest_complete_checkpoint(trainer.args.output_dir)
    for line in skipped if trainer.is_world_process_zero() else ():
        print(line, flush=True)
    if folder is None:
        raise ValueError(f"resume_from_checkpoint=True: {trainer.args.output_dir} has no complete checkpoint-N folder")
    return folder


@contextmanager
def staged_checkpoint(trainer, trial=None):
    """Around `Trainer._save_checkpoint`: every rank writes `checkpoint-N` under `<output_dir>/.staging-checkpoint-N`;
    when all have, the main process renames it to `<output_dir>/checkpoint-N` (replacing an earlier one of that step)
    and rotates the old checkpoints as the Trainer would have."""
    from transformers.trainer_utils import rotate_checkpoints

    run_dir = checkpoint_run_dir(trainer, trial)
    name = f"{CHECKPOINT_PREFIX}{trainer.state.global_step}"
    staging = os.path.join(run_dir, STAGING_PREFIX + name)
    with checkpoint_written_under(trainer, staging):
        yield
    trainer.accelerator.wait_for_everyone()
    # A trainer that does not ask _get_output_dir (another framework's override) wrote the checkpoint in place.
    if trainer.args.should_save and os.path.isdir(os.path.join(staging, name)):
        final = os.path.join(run_dir, name)
        if os.path.isdir(final):
            shutil.rmtree(final)
        os.replace(os.path.join(staging, name), final)
        shutil.rmtree(staging, ignore_errors=True)
        state = trainer.state
        if state.best_model_checkpoint and state.best_model_checkpoint.startswith(staging):
            state.best_model_checkpoint = final
            state.save_to_json(os.path.join(final, "trainer_state.json"))
        rotate_checkpoints(output_dir=run_dir, save_total_limit=trainer.args.save_total_limit,
                           best_model_checkpoint=state.best_model_checkpoint, use_mtime=True)  # fmt: skip
    elif trainer.args.should_save:
        shutil.rmtree(staging, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()
