"""The CPU op on a busy machine: the torch backend against eager Algorithm 2, alone and beside busy processes.

A laptop or a shared machine is rarely idle. torch's intra-op thread pool then waits at every parallel region for a
thread the OS has descheduled, and an op made of many small parallel regions pays that wait many times. This
measures, side by side in one run, at 2048 x 4096 (one micro-batch of embeddings) in fp32 and bf16:
  symnoise  the op on the CPU (its torch backend), forward, both halves
  eager     the paper's Algorithm 2 in plain PyTorch (a random sign tensor, add, subtract, concatenate)
under two conditions: `idle`, and `busy` with one spinning sibling process per core (os.cpu_count()). The calls
alternate (symnoise, eager, symnoise, ...) and each figure is the median of `--repeats` calls, after a warm-up in
which the op times its two CPU paths (torch's pool, worker threads) afresh for the condition. Writes
benchmarks/results/cpu_load.csv and prints a table with the ratio eager / symnoise (above 1: the op is faster).

    python benchmarks/cpu_load.py [--repeats 15] [--rows 2048] [--dim 4096]
"""

import argparse
import multiprocessing
import os
import statistics
import time

import torch

from symnoise_trl.kernels import symnoise
from symnoise_trl.kernels.symnoise_torch import FASTER_PATH
from symnoise_trl.research.report import table

from common import device_name, write_csv

SCALE = 5.0 / (3 * 2048 * 4096) ** 0.5


def eager_algorithm2(x: torch.Tensor, scale: float) -> torch.Tensor:
    eps = torch.randint(0, 2, x.shape, device=x.device, dtype=x.dtype) * 2 - 1
    return torch.cat([x + scale * eps, x - scale * eps])


def _spin():
    while True:
        pass


class BusySiblings:
    """One process per core spinning in a loop while the block runs."""

    def __init__(self, n: int):
        self.n, self.processes = n, []

    def __enter__(self):
        context = multiprocessing.get_context("spawn")
        self.processes = [context.Process(target=_spin, daemon=True) for _ in range(self.n)]
        for process in self.processes:
            process.start()
        time.sleep(1.0)  # let them get scheduled
        return self

    def __exit__(self, *exc):
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.join()


def measure(dtype: torch.dtype, rows: int, dim: int, repeats: int) -> dict[str, float]:
    FASTER_PATH.kinds.clear()  # each condition chooses its CPU path afresh, as a new process would
    x = torch.randn(rows, dim).to(dtype)
    providers = {"symnoise": lambda: symnoise(x, SCALE, 1234), "eager": lambda: eager_algorithm2(x, SCALE)}
    for _ in range(4):  # warm up; the op times its two CPU paths twice each
        for fn in providers.values():
            fn()
    times = {name: [] for name in providers}
    for _ in range(repeats):
        for name, fn in providers.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--rows", type=int, default=2048)
    parser.add_argument("--dim", type=int, default=4096)
    args = parser.parse_args(argv)
    cores = os.cpu_count() or 1
    rows = []
    for condition in ("idle", "busy"):
        for dtype in (torch.float32, torch.bfloat16):
            if condition == "busy":
                with BusySiblings(cores):
                    times = measure(dtype, args.rows, args.dim, args.repeats)
            else:
                times = measure(dtype, args.rows, args.dim, args.repeats)
            rows.append({
                "device": device_name(),
                "condition": condition if condition == "idle" else f"busy ({cores} spinning processes)",
                "dtype": str(dtype).removeprefix("torch."),
                "shape": f"{args.rows}x{args.dim}",
                "symnoise_ms": 1e3 * times["symnoise"],
                "eager_ms": 1e3 * times["eager"],
                "eager_over_symnoise": times["eager"] / times["symnoise"],
            })  # fmt: skip
    path = write_csv("cpu_load.csv", rows)
    print(f"{device_name()}, torch threads {torch.get_num_threads()} (CSV: {path.name})")
    print(table(rows, ["condition", "dtype", "shape", "symnoise_ms", "eager_ms", "eager_over_symnoise"]))


if __name__ == "__main__":
    main()
