"""The GPU check's summary: each measured figure against its target, from the files of one gpu_check run.

    python benchmarks/gpu_summary.py benchmarks/results/gpu_<device>

Reads kernel_*.csv (benchmarks/kernel.py), train_step_*.csv (benchmarks/train_step.py), qlora_memory_*.csv
(benchmarks/qlora_memory.py) and tests.log (pytest -m gpu) in that folder, writes summary.md there and prints it.
A figure that was not measured is reported as missing. Targets are measured here, never asserted in a timed test.
"""

import argparse
import csv
import re
from pathlib import Path

KERNEL_SHAPE = {"tokens": "16384", "hidden": "4096", "dtype": "bfloat16"}
# (what, where it comes from, how it compares, target)
TARGETS = [
    ("forward, % of the copy roofline's bandwidth (16384 x 4096 bf16)", "kernel", "forward", "% of copy", ">=", 85.0),
    ("forward, speed-up over eager Algorithm 2", "kernel", "forward", "x eager", ">=", 5.0),
    ("forward, speed-up over torch.compile of Algorithm 2", "kernel", "forward", "x compile", ">", 1.0),
    # within 10% of the copy's backward: time <= 1.1 x copy's, i.e. % of copy >= 100 / 1.1
    ("backward, % of the copy roofline (within 10%)", "kernel", "backward", "% of copy", ">=", 100 / 1.1),
    ("training step time vs plain SFT, equal real tokens (100m)", "train_step", "symnoise", "time_vs_sft", "<=", 2.05),
    ("two-pass peak memory vs plain SFT (100m)", "train_step", "symnoise_two_pass", "memory_vs_sft", "<=", 1.10),
    ("QLoRA 7B-shaped peak memory, GB (r=16, 1024 tokens, batch 2 doubled)", "qlora", None, "peak_memory_GB", "<",
     24.0),
    ("QLoRA 7B-shaped peak memory reserved by the allocator, GB", "qlora", None, "peak_reserved_GB", "<", 24.0),
]  # fmt: skip
COMPARE = {">=": lambda a, b: a >= b, ">": lambda a, b: a > b, "<=": lambda a, b: a <= b, "<": lambda a, b: a < b}


def _rows(folder: Path, prefix: str) -> list[dict]:
    """The rows of the folder's `prefix_*.csv` files; a full run's file comes after a --quick one, so it wins."""
    rows = []
    for path in sorted(folder.glob(f"{prefix}_*.csv"), key=lambda p: (not p.stem.endswith("_quick"), p.name)):
        with open(path) as f:
            rows += list(csv.DictReader(f))
    return rows


def measured(folder: Path) -> dict[str, float | None]:
    """Each target's measured value (None where the run did not produce it)."""
    kernel, train_step, qlora = _rows(folder, "kernel"), _rows(folder, "train_step"), _rows(folder, "qlora_memory")
    values = {}
    for what, source, key, column, _, _ in TARGETS:
        if source == "kernel":
            found = [r for r in kernel if r["provider"] == "symnoise" and r["direction"] == key
                     and all(r[k] == v for k, v in KERNEL_SHAPE.items())]  # fmt: skip
        elif source == "train_step":
            found = [r for r in train_step if r["mode"] == key and r["model"] == "100m"]
        else:
            found = [r for r in qlora if r["model"].startswith("llama-7b")]
        found = [r for r in found if r.get(column) not in (None, "")]
        values[what] = float(found[-1][column]) if found else None
    return values


def test_counts(folder: Path) -> dict[str, int] | None:
    """passed / failed / skipped / errors of pytest's last summary line in tests.log, or None without one."""
    path = folder / "tests.log"
    if not path.exists():
        return None
    lines = [line for line in path.read_text().splitlines() if re.search(r"\d+ (passed|failed|error)", line)]
    if not lines:
        return None
    counts = {k: 0 for k in ("passed", "failed", "skipped", "errors")}
    for number, word in re.findall(r"(\d+) (passed|failed|skipped|errors?)", lines[-1]):
        counts["errors" if word.startswith("error") else word] = int(number)
    return counts


def summary(folder: Path) -> str:
    lines = [f"# GPU check: {folder.name.removeprefix('gpu_')}", "", "| figure | measured | target | met |",
             "|---|---|---|---|"]  # fmt: skip
    counts = test_counts(folder)
    if counts is None:
        lines.append("| `pytest -m gpu` | missing | all pass | missing |")
    else:
        ok = counts["failed"] == counts["errors"] == 0 and counts["passed"] > 0
        text = ", ".join(f"{v} {k}" for k, v in counts.items() if v)
        lines.append(f"| `pytest -m gpu` | {text} | all pass | {'yes' if ok else 'no'} |")
    for what, value in measured(folder).items():
        _, _, _, _, op, target = next(t for t in TARGETS if t[0] == what)
        met = "missing" if value is None else ("yes" if COMPARE[op](value, target) else "no")
        lines.append(f"| {what} | {'missing' if value is None else f'{value:.3g}'} | {op} {target:.3g} | {met} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a gpu_check results folder")
    args = parser.parse_args(argv)
    if not args.folder.is_dir():
        parser.error(f"{args.folder} is not a folder")
    text = summary(args.folder)
    (args.folder / "summary.md").write_text(text)
    print(text)
    return text


if __name__ == "__main__":
    main()
