"""`symnoise-sft` end to end on the built-in tiny model: YAML config, full / LoRA / QLoRA, bad options."""

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from peft import AutoPeftModelForCausalLM
from transformers import AutoModelForCausalLM, AutoTokenizer

from symnoise_trl.cli.command import run
from symnoise_trl.hf.checkpoint_files import checkpoint_problem
from symnoise_trl.quickstart import tasks
from symnoise_trl.quickstart.tiny_model import VERSION, tiny_model_path

from helpers.checkpoints import checkpoint_folder

# Also run at the lowest versions pyproject.toml allows (scripts/test_floors.sh).
pytestmark = pytest.mark.floors

QUICKSTART = Path(__file__).parents[2] / "examples" / "quickstart.yaml"
FAST = ["--max_steps", "3", "--logging_steps", "1", "--per_device_train_batch_size", "4", "--disable_tqdm", "true"]


@pytest.fixture(autouse=True)
def model_cache(tmp_path_factory, monkeypatch):
    cache = tmp_path_factory.getbasetemp() / "symnoise_cache"  # one tiny model for the whole session
    monkeypatch.setenv("SYMNOISE_TRL_CACHE", str(cache))
    return cache


def test_quickstart_yaml_end_to_end(tmp_path, model_cache):
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "symnoise_trl", "--config", str(QUICKSTART), "--output_dir", str(out), *FAST],
        capture_output=True, text=True, timeout=600, env={**os.environ, "SYMNOISE_TRL_CACHE": str(model_cache)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"Saved the model and tokenizer to {out}" in done.stdout
    assert "To run the same on a real model" in done.stdout
    assert done.stdout.count("'loss'") + done.stderr.count("'loss'") >= 3  # Trainer's loss logs
    assert "'clean_loss'" in done.stdout + done.stderr  # the quickstart logs the loss without noise too
    assert "deprecated" not in done.stderr and "FutureWarning" not in done.stderr  # the shipped config is current
    card = (out / "README.md").read_text()
    assert f"`{tiny_model_path().name}` (a local model folder)" in card and "| `symnoise_alpha` | 5.0 |" in card
    model = AutoModelForCausalLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert model.config.vocab_size == len(tokenizer)
    saved_args = torch.load(out / "training_args.bin", weights_only=False)
    assert saved_args.symnoise_alpha == 5.0 and saved_args.max_steps == 3  # from the YAML, and its override


@pytest.mark.parametrize("quantized", [False, True], ids=["lora", "qlora"])
def test_lora_and_qlora(tmp_path, quantized):
    out = tmp_path / "adapter"
    argv = ["--config", str(QUICKSTART), "--output_dir", str(out), *FAST, "--use_peft", "--lora_r", "4"]
    if quantized:
        argv += ["--load_in_4bit", "--gradient_checkpointing", "true"]
    trainer = run(argv)
    base = trainer.model.get_base_model()
    assert any(type(m).__name__ == "Linear4bit" for m in base.modules()) == quantized
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert adapter["r"] == 4 and adapter["base_model_name_or_path"] == str(tiny_model_path())
    assert AutoPeftModelForCausalLM.from_pretrained(out).peft_config["default"].r == 4
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 3 and all(map(torch.isfinite, torch.tensor(losses)))


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--symnoise_alpha", "-1"], "`symnoise_alpha` must be finite and >= 0"),
        (["--symnoise_alpha", "5", "--neftune_noise_alpha", "5"], "`neftune_noise_alpha`"),
        (["--symnoise_alpha", "5", "--no_such_option", "1"], "no_such_option"),
        (["--symnoise_length", "tokens"], "invalid choice: 'tokens'"),
    ],
)
def test_bad_options_exit_with_a_message(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        run(["--output_dir", str(tmp_path), "--bf16", "false", *argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    lines = err.strip().splitlines()
    assert lines[0].startswith("symnoise-sft: error: ") and lines[1:] == ["(`symnoise-sft --help` lists the options)"]


def test_help_starts_with_a_description_and_the_symnoise_options():
    command = [sys.executable, "-m", "symnoise_trl", "--help"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0
    lines = done.stdout.splitlines()
    assert lines[0].startswith("usage: symnoise-sft [--config FILE.yaml]") and len(lines[0]) < 120
    assert lines[2].startswith("Supervised fine-tuning with SymNoise")
    text = " ".join(done.stdout.split())
    for option in ("--symnoise_alpha", "--symnoise_length", "--symnoise_seed", "--use_peft", "--load_in_4bit"):
        assert option in text
    assert "SymNoise strength, read like `neftune_noise_alpha`" in text
    symnoise = text.index("SymNoise options:")
    assert (
        symnoise
        < text.index("options:", symnoise + len("SymNoise options:"))
        < text.index("--per_device_train_batch_size")
    )
    section = text[symnoise : text.index("options:", symnoise + len("SymNoise options:"))]
    options = re.findall(r"(--[\w-]+)", section)
    assert options and all(option.startswith(("--symnoise_", "--symnoise-")) for option in options)
    assert set(options) >= {"--symnoise_alpha", "--symnoise_two_pass", "--symnoise_distribution"}


class Interrupted(Exception):
    pass


def test_resume_from_checkpoint_true_continues_an_interrupted_run(tmp_path, monkeypatch, capsys):
    from symnoise_trl import SymNoiseSFTTrainer

    argv = ["--config", str(QUICKSTART), *FAST, "--max_steps", "6", "--save_steps", "3", "--save_total_limit", "5",
            "--lr_scheduler_type", "constant", "--warmup_steps", "0"]  # fmt: skip
    full = run([*argv, "--output_dir", str(tmp_path / "full")])

    step = SymNoiseSFTTrainer.training_step

    def crash_after_the_checkpoint(self, *args, **kwargs):
        if self.state.global_step == 4:
            raise Interrupted
        return step(self, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(SymNoiseSFTTrainer, "training_step", crash_after_the_checkpoint)
        with pytest.raises(Interrupted):
            run([*argv, "--output_dir", str(tmp_path / "cut")])
    assert sorted(p.name for p in (tmp_path / "cut").glob("checkpoint-*")) == ["checkpoint-3"]
    capsys.readouterr()
    resumed = run([*argv, "--output_dir", str(tmp_path / "cut"), "--resume_from_checkpoint", "true"])
    assert f"Resuming from {tmp_path / 'cut' / 'checkpoint-3'} at step 3" in capsys.readouterr().out
    losses = [[h["loss"] for h in t.state.log_history if "loss" in h] for t in (full, resumed)]
    assert len(losses[0]) == 6 and losses[1] == pytest.approx(losses[0], rel=1e-6)  # 1-3 from the checkpoint's log
    for (name, a), (_, b) in zip(full.model.named_parameters(), resumed.model.named_parameters(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-7, msg=name)


def test_resume_argument_takes_yaml_booleans(tmp_path):
    from symnoise_trl.cli.command import resume_argument

    checkpoint_folder(tmp_path / "checkpoint-3")
    # `resume_from_checkpoint: true` in a YAML config: the latest checkpoint
    assert resume_argument(True, str(tmp_path)) == str(tmp_path / "checkpoint-3")
    assert resume_argument(False, str(tmp_path)) is None and resume_argument(None, str(tmp_path)) is None
    assert resume_argument(str(tmp_path / "checkpoint-3"), str(tmp_path)) == str(tmp_path / "checkpoint-3")


def test_resume_true_takes_the_newest_complete_checkpoint_and_says_what_it_skipped(tmp_path, capsys):
    from symnoise_trl.cli.command import resume_argument

    checkpoint_folder(tmp_path / "checkpoint-4")
    checkpoint_folder(tmp_path / "checkpoint-12")
    partial = tmp_path / "checkpoint-16"  # a kill -9 or a full disk during a save: a config and half the weights
    partial.mkdir()
    (partial / "config.json").write_text("{}")
    (partial / "model.safetensors").write_bytes((tmp_path / "checkpoint-12" / "model.safetensors").read_bytes()[:-8])
    no_rng = checkpoint_folder(tmp_path / "checkpoint-14")
    (no_rng / "rng_state.pth").unlink()
    cut = checkpoint_folder(tmp_path / "checkpoint-13")
    whole = (cut / "model.safetensors").read_bytes()
    (cut / "model.safetensors").write_bytes(whole[:-8])  # the last two of the four float32 zeros
    for value in ("true", "last"):
        assert resume_argument(value, str(tmp_path)) == str(tmp_path / "checkpoint-12")
        assert capsys.readouterr().out.splitlines() == [
            f"Skipping {partial}: no trainer_state.json",
            f"Skipping {no_rng}: no rng_state.pth (the random state)",
            f"Skipping {cut}: model.safetensors is truncated ({len(whole) - 8} bytes; its tensors need {len(whole)})",
        ]


@pytest.mark.parametrize(
    "value, message",
    [("true", "has no complete checkpoint-N folder"), ("last", "has no complete checkpoint-N folder"),
     ("no/such/checkpoint-3", "no/such/checkpoint-3: not a complete checkpoint (no such folder)"),
     (".", ".: not a complete checkpoint (no trainer_state.json)")],
)  # fmt: skip
def test_resume_without_a_checkpoint_is_an_error(tmp_path, capsys, value, message):
    with pytest.raises(SystemExit) as exit_info:
        run(["--bf16", "false", "--output_dir", str(tmp_path / "empty"), "--resume_from_checkpoint", value])
    assert exit_info.value.code == 2
    assert f"--resume_from_checkpoint {value}: " in (err := capsys.readouterr().err) and message in err


def test_tiny_model_is_built_once(model_cache):
    path = tiny_model_path()
    assert path == model_cache / VERSION
    stamp = (path / "model.safetensors").stat().st_mtime_ns
    assert tiny_model_path() == path and (path / "model.safetensors").stat().st_mtime_ns == stamp
    tokenizer = AutoTokenizer.from_pretrained(path)
    example = "Sort ascending: 38 61 45 27 64"
    assert tokenizer.decode(tokenizer(example)["input_ids"]) == example


def test_task_data_is_deterministic_and_shipped():
    splits = tasks.generate()
    assert splits == tasks.generate()
    assert len(splits["train"]) >= 1000 and len(splits["test"]) >= 100
    for split, rows in splits.items():
        shipped = [json.loads(line) for line in (tasks.DATA_DIR / f"{split}.jsonl").read_text().splitlines()]
        assert shipped == rows, f"{split}.jsonl differs from its generator: python -m symnoise_trl.quickstart.tasks"
    assert not {r["prompt"] for r in splits["train"]} & {r["prompt"] for r in splits["test"]}
    assert {r["task"] for r in splits["test"]} == set(tasks.TASKS)
    assert all(r["completion"].startswith(" ") for r in splits["train"])


def test_task_answers_are_right():
    checked = 0
    for row in tasks.generate(n_train=300, n_test=0, seed=1)["train"]:
        prompt, answer = row["prompt"], row["completion"].strip()
        if row["task"] in ("add", "subtract", "multiply"):
            expression = prompt.removeprefix("What is ").removesuffix("?")
            assert str(eval(expression, {"__builtins__": {}})) == answer  # noqa: S307 - digits and one operator
        elif row["task"] == "sort":
            assert answer.split() == sorted(prompt.split(": ")[1].split(), key=int)
        elif row["task"] == "reverse":
            assert answer == prompt.split()[-1][::-1]
        else:
            continue
        checked += 1
        assert tasks.is_correct(row, f"  {answer}\n") and not tasks.is_correct(row, answer + "0")
    assert checked > 100


def test_sigterm_saves_a_checkpoint_says_how_to_resume_and_resume_true_takes_it(tmp_path):
    """As a preemptible machine or Slurm stops a run: SIGTERM to the `symnoise-sft` process while it trains."""
    out = tmp_path / "out"
    command = [sys.executable, "-m", "symnoise_trl", "--symnoise_alpha", "5", "--output_dir", str(out), "--bf16",
               "false", "--per_device_train_batch_size", "4", "--logging_steps", "1", "--save_steps", "1000",
               "--report_to", "none", "--disable_tqdm", "true"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # the session's model cache (model_cache)
    process = subprocess.Popen([*command, "--max_steps", "1000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=env)  # fmt: skip
    for line in process.stdout:
        if line.startswith("{'loss'"):  # training has started
            process.send_signal(signal.SIGTERM)
            break
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 143, stderr[-3000:]
    stopped = stdout.strip().splitlines()[-1]
    step = int(stopped.split("after step ")[1].split(":")[0])
    checkpoint = out / f"checkpoint-{step}"
    assert stopped == (
        f"Stopped by SIGTERM after step {step}: saved {checkpoint}. Resume with --resume_from_checkpoint "
        f"{checkpoint} (symnoise-sft: or true), or trainer.train(resume_from_checkpoint={str(checkpoint)!r})"
    )
    assert checkpoint_problem(checkpoint) is None and not (out / "model.safetensors").exists()  # not saved as done

    resumed = subprocess.run([*command, "--max_steps", str(step + 2), "--resume_from_checkpoint", "true"],
                             capture_output=True, text=True, env=env, timeout=300)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"Resuming from {checkpoint} at step {step}" in resumed.stdout
    assert (out / "model.safetensors").is_file()
