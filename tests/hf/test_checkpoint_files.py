"""What makes a folder a complete Trainer checkpoint, from its files: the layouts transformers writes (plain, LoRA,
DeepSpeed, FSDP), and each missing or broken part named."""

import pytest
import torch
from safetensors.torch import save_file
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from symnoise_trl.hf.checkpoint_files import (
    CHECKPOINT_PREFIX,
    checkpoint_problem,
    newest_complete_checkpoint,
    safetensors_problem,
)

from helpers.checkpoints import PLAIN, checkpoint_folder

LAYOUTS = {
    "plain": (PLAIN, None),
    "lora": (["trainer_state.json", "adapter_model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state_1.pth"],
             None),
    "deepspeed": (["trainer_state.json", "model.safetensors", "global_step8/", "latest", "rng_state_0.pth"], None),
    "fsdp": (["trainer_state.json", "pytorch_model_fsdp_0/", "optimizer_0/", "scheduler.pt", "rng_state_0.pth"], None),
    "no state": (PLAIN[1:], "no trainer_state.json"),
    "no weights": ([n for n in PLAIN if n != "model.safetensors"], "no model or adapter weights"),
    "no optimizer": ([n for n in PLAIN if n != "optimizer.pt"], "no optimizer.pt (the optimizer state)"),
    "no scheduler": ([n for n in PLAIN if n != "scheduler.pt"], "no scheduler.pt (the learning-rate scheduler state)"),
    "no rng": (PLAIN[:-1], "no rng_state.pth (the random state)"),
}  # fmt: skip


@pytest.mark.parametrize("layout", LAYOUTS)
def test_each_layout_and_each_missing_part(tmp_path, layout):
    names, problem = LAYOUTS[layout]
    found = checkpoint_problem(checkpoint_folder(tmp_path / "checkpoint-8", names))
    assert found == problem if problem is None else found.startswith(problem)


def test_safetensors_files_cut_short_or_scrambled_are_named(tmp_path):
    path = tmp_path / "model.safetensors"
    save_file({"weight": torch.zeros(4)}, str(path))
    whole = path.read_bytes()
    assert safetensors_problem(path) is None
    path.write_bytes(whole[:5])
    assert safetensors_problem(path) == "is truncated (5 bytes: no header)"
    path.write_bytes(whole[:20])
    assert safetensors_problem(path).startswith("is truncated (20 bytes; its header alone says")
    path.write_bytes(whole[:8] + b"\xff" * (len(whole) - 8))
    assert safetensors_problem(path) == "is corrupt (its header is not JSON)"


def test_the_checkpoint_names_are_transformers_own():
    assert CHECKPOINT_PREFIX == f"{PREFIX_CHECKPOINT_DIR}-"


def test_the_newest_complete_checkpoint_and_the_newer_folders_skipped(tmp_path):
    checkpoint_folder(tmp_path / "checkpoint-4", PLAIN)
    checkpoint_folder(tmp_path / "checkpoint-12", PLAIN)
    checkpoint_folder(tmp_path / "checkpoint-16", PLAIN[1:])
    checkpoint_folder(tmp_path / ".staging-checkpoint-20", [])
    checkpoint_folder(tmp_path / "checkpoint-final", PLAIN)  # not a step: not a checkpoint-N
    folder, skipped = newest_complete_checkpoint(tmp_path)
    assert folder == str(tmp_path / "checkpoint-12")
    assert skipped == [f"Skipping {tmp_path / '.staging-checkpoint-20'}: a save that did not finish",
                       f"Skipping {tmp_path / 'checkpoint-16'}: no trainer_state.json"]  # fmt: skip
    assert newest_complete_checkpoint(tmp_path / "missing") == (None, [])
