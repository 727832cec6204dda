"""The cost of `symnoise_clean_loss_steps`: SymNoise SFT step time with the clean loss off, every step, every 10 steps.

The quickstart's tiny model and data (or the ~114M-parameter Llama of train_step.py with `--model 100m`), the same
batches in every run. The runs alternate in rounds (off, N=1, N=10, off, ...) in one process, so that they share the
machine's state; each round trains `--steps` steps, the first two untimed. The clean loss adds one no-gradient
forward of the original batch on the steps it measures, so N=1 should cost about a third of a one-pass step (a
forward of B rows against a forward and backward of 2B) and N=10 a tenth of that. Step times on a shared CPU are
noisy, so it also times the clean forward itself (`clean_forward_ms`, the median of every call) and reports the
overhead it implies, `expected_x_off` = 1 + clean_forward_ms / (off's mean step) / N, beside the measured `x_off`.
Writes benchmarks/results/clean_loss_<model>.csv and prints a table.

    python benchmarks/clean_loss.py [--steps 20] [--rounds 3] [--batch-size 8] [--model tiny]
"""

import argparse
import statistics
import tempfile
import time

import torch

from symnoise_trl.research.report import table
from symnoise_trl.trainers.clean_loss import CleanLossMeter

from common import device_name, step_timer, write_csv

SETTINGS = (0, 1, 10)
WARMUP_STEPS = 2


def timed_measure(record: list[float]):
    """CleanLossMeter.measure, timing each call into `record` (synchronised on a GPU)."""
    measure = CleanLossMeter.measure

    def timed(self, *args, **kwargs):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        measure(self, *args, **kwargs)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        record.append(time.perf_counter() - start)

    return timed


def step_times(every: int, model_size: str, steps: int, batch_size: int) -> list[float]:
    from datasets import load_dataset

    from symnoise_trl import SymNoiseSFTConfig, SymNoiseSFTTrainer
    from symnoise_trl.quickstart.tasks import DATA_DIR

    from train_step import build_model

    on_gpu = torch.cuda.is_available()
    times = []

    model, tokenizer = build_model(model_size)
    args = SymNoiseSFTConfig(
        output_dir=tempfile.mkdtemp(prefix="clean_loss_"), symnoise_alpha=5.0, symnoise_clean_loss_steps=every,
        per_device_train_batch_size=batch_size, max_steps=steps, learning_rate=1e-4, logging_steps=10,
        report_to="none", save_strategy="no", max_length=64, bf16=on_gpu, dataloader_pin_memory=False,
        disable_tqdm=True, seed=0,
    )  # fmt: skip
    data = load_dataset(str(DATA_DIR), split="train")
    trainer = SymNoiseSFTTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer,
                                 callbacks=[step_timer(times)])  # fmt: skip
    trainer.train()
    return times[WARMUP_STEPS:]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help=f"steps per round, the first {WARMUP_STEPS} untimed")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of (off, N=1, N=10)")
    parser.add_argument("--batch-size", type=int, default=8, help="sequences per step (before SymNoise doubles them)")
    parser.add_argument("--model", default="tiny", choices=("tiny", "100m"))
    args = parser.parse_args(argv)
    measured, forwards = {every: [] for every in SETTINGS}, []
    CleanLossMeter.measure = timed_measure(forwards)
    for _ in range(args.rounds):
        for every in SETTINGS:
            measured[every] += step_times(every, args.model, args.steps, args.batch_size)
    base = statistics.fmean(measured[0])  # means: with N=10 the cost is on one step in ten
    clean_forward = statistics.median(forwards)
    device = device_name()
    rows = [
        {
            "device": device,
            "model": args.model,
            "clean_loss_steps": every or "off",
            "median_step_ms": 1e3 * statistics.median(times),
            "mean_step_ms": 1e3 * statistics.fmean(times),
            "x_off": statistics.fmean(times) / base,
            "clean_forward_ms": 1e3 * clean_forward if every else 0.0,
            "expected_x_off": 1 + clean_forward / base / every if every else 1.0,
            "steps_timed": len(times),
        }
        for every, times in measured.items()
    ]
    path = write_csv(f"clean_loss_{args.model}.csv", rows)
    print(f"{device}, batch {args.batch_size}, {args.rounds} rounds of {args.steps} steps (CSV: {path.name})")
    print(
        table(
            rows,
            [
                "model",
                "clean_loss_steps",
                "median_step_ms",
                "mean_step_ms",
                "x_off",
                "clean_forward_ms",
                "expected_x_off",
                "steps_timed",
            ],
        )
    )


if __name__ == "__main__":
    main()
