"""Stopping at a signal, with real processes (tests/workers/signal_worker.py): SIGTERM or a first Ctrl-C between
checkpoints saves one at the end of the step and exits 143 / 130, and resuming from it reproduces the uninterrupted
run bit for bit (both modes, gradient accumulation 2, mid-epoch); a second Ctrl-C stops at once; a kill -9 in the
middle of a save leaves no checkpoint folder, and `resume true` takes the previous one; with two ranks, a signal to
one stops both at the same step. In process: the callback in any Trainer, and the field that turns it off."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from transformers import Trainer, TrainerCallback, TrainingArguments

from symnoise_trl import SaveOnSignalCallback, SymNoiseSFTConfig, SymNoiseSFTTrainer, SymNoiseTrainer
from symnoise_trl.cli.command import resume_argument
from symnoise_trl.hf.checkpoint_files import checkpoint_problem

from helpers import tiny

WORKER = Path(__file__).parents[1] / "workers" / "signal_worker.py"
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def start(out, *options, torchrun=False):
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29541"]
    command = [*(launcher if torchrun else [sys.executable]), str(WORKER), str(out), *options]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)


def wait_for(process, prefix: str) -> int:
    """Read the process's output up to a line that starts with `prefix`; the pid on that line."""
    for line in process.stdout:
        if line.startswith(prefix):
            return int(line.split()[1])
    process.wait()
    raise AssertionError(f"no {prefix!r} line; exit {process.returncode}: {process.stderr.read()[-3000:]}")


def finish(process, timeout=300) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def result(out) -> dict:
    return torch.load(Path(out) / "result0.pt")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The reference runs, one per mode, in processes of their own."""
    runs = {}
    for mode in ("one_pass", "two_pass"):
        out = tmp_path_factory.mktemp(mode)
        code, _, err = finish(start(out, *(["--two-pass"] if mode == "two_pass" else [])))
        assert code == 0, err[-3000:]
        runs[mode] = result(out)
    return runs


@pytest.mark.parametrize(("mode", "signum"), [("one_pass", signal.SIGTERM), ("two_pass", signal.SIGINT)])
def test_a_signal_between_checkpoints_saves_there_and_resuming_reproduces_the_run_bit_for_bit(
    tmp_path, uninterrupted, mode, signum
):
    two_pass = ["--two-pass"] if mode == "two_pass" else []
    out = tmp_path / "interrupted"
    process = start(out, "--wait-at", "5", *two_pass)  # in step 6 of 10; checkpoints every 4 steps
    wait_for(process, "READY")
    process.send_signal(signum)
    code, stdout, stderr = finish(process)
    assert code == 128 + signum, stderr[-3000:]
    checkpoint = out / "checkpoint-6"
    assert f"after step 6: saved {checkpoint}. Resume with --resume_from_checkpoint {checkpoint}" in stdout
    assert checkpoint_problem(checkpoint) is None
    saved = sorted(p.name for p in out.iterdir() if p.name.startswith(("checkpoint", ".staging")))
    assert saved == ["checkpoint-4", "checkpoint-6"]
    assert not (out / "result0.pt").exists()  # training did not return

    resumed = tmp_path / "resumed"
    code, _, stderr = finish(start(resumed, "--resume", str(checkpoint), *two_pass))
    assert code == 0, stderr[-3000:]
    full, again = uninterrupted[mode], result(resumed)
    assert again["step"] == full["step"] == 10
    assert again["losses"] == full["losses"]  # every logged loss, the 6 restored with the state and the 4 after
    assert again["seeds"] == full["seeds"][12:]  # the noise of steps 7-10, two micro-batches each
    for name, value in full["params"].items():
        assert torch.equal(again["params"][name], value), name


def test_a_second_ctrl_c_stops_at_once(tmp_path):
    process = start(tmp_path, "--wait-at", "5", "--hold")
    wait_for(process, "READY")
    process.send_signal(signal.SIGINT)
    for line in process.stderr:  # the first one was handled: the process now finishes the step, slowly (--hold)
        if line.startswith("SIGINT: finishing this optimizer step"):
            break
    process.send_signal(signal.SIGINT)
    code, _, stderr = finish(process, timeout=60)
    assert code != 0 and "KeyboardInterrupt" in stderr
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("checkpoint")) == ["checkpoint-4"]


def test_a_kill_in_the_middle_of_a_save_leaves_no_checkpoint_folder_and_resume_takes_the_previous(
    tmp_path, uninterrupted, capsys
):
    out = tmp_path / "killed"
    process = start(out, "--pause-save", "8")  # after the weights and the optimizer state of checkpoint-8
    os.kill(wait_for(process, "SAVING"), signal.SIGKILL)
    code, _, _ = finish(process)
    assert code == -signal.SIGKILL
    assert (out / ".staging-checkpoint-8" / "checkpoint-8" / "model.safetensors").is_file()  # half written, aside
    assert not (out / "checkpoint-8").exists()
    assert resume_argument("true", str(out)) == str(out / "checkpoint-4")  # the CLI's resume true
    assert capsys.readouterr().out == f"Skipping {out / '.staging-checkpoint-8'}: a save that did not finish\n"

    # The trainer's own train(resume_from_checkpoint=True), in the same folder: from checkpoint-4, to the end.
    code, stdout, stderr = finish(start(out, "--resume", "true"))
    assert code == 0, stderr[-3000:]
    assert f"Skipping {out / '.staging-checkpoint-8'}: a save that did not finish" in stdout
    full, again = uninterrupted["one_pass"], result(out)
    assert again["losses"] == full["losses"] and again["seeds"] == full["seeds"][8:]
    for name, value in full["params"].items():
        assert torch.equal(again["params"][name], value), name
    assert checkpoint_problem(out / "checkpoint-8") is None and not list(out.glob(".staging-*"))


@pytest.mark.floors
def test_two_ranks_stop_at_the_same_step_when_one_gets_the_signal(tmp_path):
    process = start(tmp_path, "--wait-at", "5", "--rank", "1", torchrun=True)
    os.kill(wait_for(process, "READY"), signal.SIGTERM)  # rank 1 alone
    code, stdout, stderr = finish(process)
    assert code != 0  # torchrun reports its workers' 143
    checkpoint = tmp_path / "checkpoint-6"
    assert stdout.count(f"after step 6: saved {checkpoint}") == 1, stderr[-3000:]  # printed by rank 0, not signalled
    assert checkpoint_problem(checkpoint) is None
    assert {p.name for p in checkpoint.glob("rng_state_*.pth")} == {"rng_state_0.pth", "rng_state_1.pth"}
    assert not (tmp_path / "checkpoint-8").exists() and not list(tmp_path.glob(".staging-*"))


class SignalAt(TrainerCallback):
    """Sends `signum` to this process at the start of optimizer step `step` + 1."""

    def __init__(self, step, signum=signal.SIGTERM):
        self.step, self.signum = step, signum

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            os.kill(os.getpid(), self.signum)
            time.sleep(0.1)  # Python runs the handler between bytecodes of this, the main, thread


@pytest.mark.floors
def test_any_trainer_stops_with_a_checkpoint_through_the_callback(tmp_path):
    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=4, max_steps=6, report_to="none",
                             use_cpu=True, save_strategy="no", logging_steps=1, disable_tqdm=True)  # fmt: skip
    trainer = Trainer(model=tiny.model(), args=args, train_dataset=tiny.tokenized(prompt_labels=True),
                      data_collator=tiny.COLLATORS["padding_with_labels"](),
                      callbacks=[SaveOnSignalCallback(), SignalAt(2)])  # fmt: skip
    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as stop:
        trainer.train()
    assert stop.value.code == 143
    assert trainer.state.global_step == 3  # the step in progress finished; no save_strategy, a checkpoint all the same
    assert checkpoint_problem(tmp_path / "checkpoint-3") is None
    assert signal.getsignal(signal.SIGTERM) is previous  # the handlers were put back


@pytest.mark.floors
@pytest.mark.parametrize("save_on_signal", [True, False])
def test_the_symnoise_trainers_stop_at_a_signal_unless_told_not_to(tmp_path, save_on_signal):
    args = tiny.train_args(SymNoiseSFTConfig, tmp_path, symnoise_alpha=5.0, max_steps=6, save_on_signal=save_on_signal)
    trainer = SymNoiseSFTTrainer(model=tiny.model(), args=args, train_dataset=tiny.prompt_completion_dataset(),
                                 processing_class=tiny.tokenizer())  # fmt: skip
    trainer.add_callback(SignalAt(2, signal.SIGINT))
    if save_on_signal:
        with pytest.raises(SystemExit) as stop:
            trainer.train()
        assert stop.value.code == 130 and checkpoint_problem(tmp_path / "checkpoint-3") is None
    else:  # Python's default: KeyboardInterrupt where the signal lands, nothing saved
        # A shell's background job inherits SIGINT ignored, and Python then keeps it so: set the default a foreground
        # process has, which the trainer must leave alone.
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            with pytest.raises(KeyboardInterrupt):
                trainer.train()
        finally:
            signal.signal(signal.SIGINT, previous)
        assert not list(tmp_path.glob("checkpoint-*"))
    assert not any(isinstance(c, SaveOnSignalCallback) for c in trainer.callback_handler.callbacks)  # train()'s own


@pytest.mark.floors
def test_a_train_that_raises_puts_the_signal_handlers_back(tmp_path):
    class Failing(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            raise RuntimeError("a run that fails")

    args = tiny.train_args(SymNoiseSFTConfig, tmp_path, symnoise_alpha=5.0, max_steps=2)
    trainer = SymNoiseSFTTrainer(model=tiny.model(), args=args, train_dataset=tiny.prompt_completion_dataset(),
                                 processing_class=tiny.tokenizer(), callbacks=[Failing()])  # fmt: skip
    before = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    with pytest.raises(RuntimeError, match="a run that fails"):
        trainer.train()
    assert {signum: signal.getsignal(signum) for signum in before} == before


def test_symnoise_trainer_saves_on_signal_by_default(tmp_path):
    from symnoise_trl import SymNoiseTrainingArguments

    args = SymNoiseTrainingArguments(output_dir=str(tmp_path), max_steps=6, per_device_train_batch_size=4,
                                     report_to="none", use_cpu=True, disable_tqdm=True,
                                     symnoise_alpha=5.0)  # fmt: skip
    assert args.save_on_signal is True
    trainer = SymNoiseTrainer(model=tiny.model(), args=args, train_dataset=tiny.tokenized(prompt_labels=True),
                              data_collator=tiny.COLLATORS["padding_with_labels"]())  # fmt: skip
    trainer.add_callback(SignalAt(1))
    with pytest.raises(SystemExit) as stop:
        trainer.train()
    assert stop.value.code == 143 and checkpoint_problem(tmp_path / "checkpoint-2") is None
