"""Small helpers shared by the benchmark scripts: the device's name and the result folder. Tables and plots come from
`symnoise_trl.research.report`, so the benchmarks and the ablation report the same way."""

import os
import platform
import re
import subprocess
from pathlib import Path

import torch

from symnoise_trl.research import report

# SYMNOISE_RESULTS sends a run's files elsewhere (scripts/gpu_check.sh: benchmarks/results/gpu_<device>/).
RESULTS = Path(os.environ.get("SYMNOISE_RESULTS", Path(__file__).parent / "results"))


def device_name() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    try:
        model = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = next(line.split(":", 1)[1].strip() for line in model.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        model = platform.processor() or platform.machine()
    return f"CPU: {model} ({torch.get_num_threads()} threads)"


def device_slug(name: str) -> str:
    """`name` (a `device_name()`) as part of a file name: lower case, runs of other characters as one `_`."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")[:40]


def write_csv(name: str, rows: list[dict]) -> Path:
    """benchmarks/results/<name> (or $SYMNOISE_RESULTS/<name>)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    return report.write_csv(RESULTS / name, rows)


def step_timer(times: list[float]):
    """A Trainer callback that appends each optimizer step's wall time to `times` (synchronised on a GPU)."""
    import time

    from transformers import TrainerCallback

    def sync():
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    class StepTimer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            sync()
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            sync()
            times.append(time.perf_counter() - self.start)

    return StepTimer()
