"""The quickstart's training step on a busy machine: plain SFT and SymNoise, on torch's default threads and on one.

The quickstart trains a 1.8M-parameter model, whose every op is small: on a machine where other processes keep the
cores busy, torch's intra-op threads spend the step waiting for each other at every parallel region. This measures
the mean step time of the quickstart's own configuration (examples/quickstart.yaml: batch 8, max_length 64) for
  sft        TRL's SFTTrainer (no noise)
  symnoise   SymNoiseSFTTrainer, alpha 5 (the doubled batch)
on `threads` = torch's default and 1, `idle` and `busy` (one spinning process per core), side by side in one run,
and the quickstart's training time it implies (its steps x the mean step). Writes
benchmarks/results/quickstart_load.csv and prints a table.

    python benchmarks/quickstart_load.py [--steps 40]
"""

import argparse
import os
import statistics
import tempfile

import torch
import yaml

from symnoise_trl.research.report import table

from common import device_name, step_timer, write_csv
from cpu_load import BusySiblings

WARMUP_STEPS = 3
QUICKSTART = os.path.join(os.path.dirname(__file__), "..", "examples", "quickstart.yaml")


def quickstart_steps(config: dict) -> int:
    return config.get("max_steps", -1) if config.get("max_steps", -1) > 0 else (
        config["num_train_epochs"] * -(-2000 // config["per_device_train_batch_size"])
    )  # fmt: skip


def mean_step(mode: str, config: dict, steps: int) -> float:
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from symnoise_trl import SymNoiseSFTConfig, SymNoiseSFTTrainer
    from symnoise_trl.quickstart.tasks import DATA_DIR
    from symnoise_trl.quickstart.tiny_model import tiny_model_path

    times = []

    keys = ("per_device_train_batch_size", "learning_rate", "max_length", "bf16", "dataloader_pin_memory", "seed")
    common = {k: config[k] for k in keys if k in config}
    common.update(output_dir=tempfile.mkdtemp(prefix="quickstart_load_"), max_steps=steps, report_to="none",
                  save_strategy="no", logging_steps=10, disable_tqdm=True)  # fmt: skip
    if mode == "sft":
        args, trainer_cls = SFTConfig(**common), SFTTrainer
    else:
        args, trainer_cls = SymNoiseSFTConfig(**common, symnoise_alpha=config["symnoise_alpha"]), SymNoiseSFTTrainer
    path = tiny_model_path()
    trainer = trainer_cls(model=AutoModelForCausalLM.from_pretrained(path), args=args,
                          train_dataset=load_dataset(str(DATA_DIR), split="train"),
                          processing_class=AutoTokenizer.from_pretrained(path),
                          callbacks=[step_timer(times)])  # fmt: skip
    trainer.train()
    return statistics.fmean(times[WARMUP_STEPS:])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40, help=f"steps per run, the first {WARMUP_STEPS} untimed")
    args = parser.parse_args(argv)
    with open(QUICKSTART) as f:
        config = yaml.safe_load(f)
    total_steps = quickstart_steps(config)
    default_threads, cores = torch.get_num_threads(), os.cpu_count() or 1
    rows = []
    for condition in ("idle", "busy"):
        for threads in sorted({default_threads, 1}, reverse=True):
            for mode in ("sft", "symnoise"):
                torch.set_num_threads(threads)
                if condition == "busy":
                    with BusySiblings(cores):
                        step = mean_step(mode, config, args.steps)
                else:
                    step = mean_step(mode, config, args.steps)
                rows.append({
                    "device": device_name(), "condition": condition if condition == "idle" else f"busy ({cores})",
                    "threads": threads, "mode": mode, "step_ms": 1e3 * step,
                    "quickstart_training_s": step * total_steps,
                })  # fmt: skip
    torch.set_num_threads(default_threads)
    path = write_csv("quickstart_load.csv", rows)
    print(f"{device_name()}, the quickstart's {total_steps} steps (CSV: {path.name})")
    print(table(rows, ["condition", "threads", "mode", "step_ms", "quickstart_training_s"]))


if __name__ == "__main__":
    main()
