"""HF: what a Trainer checkpoint folder and a saved model's weights hold, checked from the files alone (nothing is
loaded): `checkpoint_problem` says why a folder is not a complete checkpoint, `newest_complete_checkpoint` is what
`resume true` takes (the CLI's, and `train(resume_from_checkpoint=True)` of the SymNoise trainers), and
`safetensors_problem` says why a weights file is not whole (the CLI names it before loading a model folder).
Standard library only, so the CLI's checks run before torch or transformers load."""

import json
import os
import struct
from pathlib import Path

STAGING_PREFIX = ".staging-"  # `.staging-checkpoint-N`: a checkpoint being written (symnoise_trl.trainers.preemption)
CHECKPOINT_PREFIX = "checkpoint-"  # transformers' PREFIX_CHECKPOINT_DIR, and the folders resume looks for


def newest_complete_checkpoint(output_dir: str | Path) -> tuple[str | None, list[str]]:
    """The newest complete `checkpoint-N` in `output_dir` (None if there is none), and a line for each newer folder
    skipped on the way: an incomplete `checkpoint-N` (`checkpoint_problem`), or the staging folder of a save that did
    not finish."""
    steps = {}
    for path in Path(output_dir).iterdir() if Path(output_dir).is_dir() else ():
        number = path.name.removeprefix(STAGING_PREFIX).removeprefix(CHECKPOINT_PREFIX)
        if path.is_dir() and number.isdigit() and path.name != number:
            steps[path] = (int(number), not path.name.startswith(STAGING_PREFIX))
    skipped = []
    for path in sorted(steps, key=steps.get, reverse=True):
        problem = checkpoint_problem(path) if steps[path][1] else "a save that did not finish"
        if problem is None:
            return str(path), skipped
        skipped.append(f"Skipping {path}: {problem}")
    return None, skipped


# What a Trainer checkpoint holds (transformers' file names), for `checkpoint_problem`.
WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json",
           "adapter_model.safetensors", "adapter_model.bin")  # fmt: skip
TRAINING_STATE = {"optimizer.pt": "the optimizer state", "scheduler.pt": "the learning-rate scheduler state"}


def checkpoint_problem(folder: str | Path) -> str | None:
    """Why `folder` is not a complete Trainer checkpoint, or None when it is: it must hold the trainer state, the
    model's or adapter's weights (readable safetensors headers that fit their files; FSDP's own files instead), the
    optimizer and scheduler states (`optimizer.pt`, `scheduler.pt`; DeepSpeed keeps both in its `global_step*`
    folder, FSDP the optimizer in its own files), and the RNG state."""
    folder = Path(folder)
    if not folder.is_dir():
        return "no such folder"
    if not (folder / "trainer_state.json").is_file():
        return "no trainer_state.json"
    names = {p.name for p in folder.iterdir()}
    weights = [folder / name for name in WEIGHTS if name in names]
    fsdp = any(name.startswith("pytorch_model_fsdp") for name in names)
    if not weights and not fsdp:
        return f"no model or adapter weights ({', '.join(WEIGHTS[::2])}, ...)"
    for path in weights:
        problem = safetensors_problem(path) if path.suffix == ".safetensors" else None
        if problem:
            return f"{path.name} {problem}"
    # DeepSpeed keeps the optimizer (and its scheduler) in global_step*/; FSDP its optimizer in optimizer_0/ or .bin
    deepspeed = any(name.startswith("global_step") for name in names)
    fsdp_optimizer = any(name.startswith(("optimizer_0", "optimizer.bin")) for name in names)
    for name, what in TRAINING_STATE.items():
        held_elsewhere = deepspeed or (fsdp_optimizer and name == "optimizer.pt")
        if name not in names and not held_elsewhere:
            return f"no {name} ({what})"
    if not any(name.startswith("rng_state") and name.endswith(".pth") for name in names):
        return "no rng_state.pth (the random state)"
    return None


def safetensors_problem(path: str | Path) -> str | None:
    """Why `path` is not a whole safetensors file (its header unreadable, or its tensors past the file's end), or
    None. Reads the header only."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            return f"is truncated ({size} bytes: no header)"
        (length,) = struct.unpack("<Q", head)
        if 8 + length > size:
            return f"is truncated ({size} bytes; its header alone says {8 + length})"
        try:
            header = json.loads(f.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return "is corrupt (its header is not JSON)"
    ends = [entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"]
    needed = 8 + length + max(ends, default=0)
    if needed > size:
        return f"is truncated ({size} bytes; its tensors need {needed})"
    return None
