"""Checkpoint folders made by hand, as a Trainer's files (their contents do not matter to the completeness checks; a
safetensors file's header does)."""

import torch
from safetensors.torch import save_file

# What a plain Trainer checkpoint holds.
PLAIN = ["trainer_state.json", "model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth"]


def checkpoint_folder(folder, names=PLAIN):
    """`folder` with `names`: a folder for a name ending in `/`, a small safetensors file, or a file holding `{}`."""
    folder.mkdir(parents=True)
    for name in names:
        if name.endswith("/"):
            (folder / name).mkdir()
        elif name.endswith(".safetensors"):
            save_file({"weight": torch.zeros(4)}, str(folder / name))
        else:
            (folder / name).write_text("{}")
    return folder
