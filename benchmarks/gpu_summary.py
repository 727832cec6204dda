"""The GPU check's summary: each phase's status, and each measured figure against its target, from one gpu_check run.

    python benchmarks/gpu_summary.py FOLDER     # the folder of scripts/gpu_check.sh --out
    python benchmarks/gpu_summary.py --versions # import the packages the check uses together, print their versions

Reads phases.csv and gpu_check.log (scripts/gpu_check.sh: each phase's status; pytest -m gpu's counts; the install
phase's versions line), kernel_*.csv (benchmarks/kernel.py), train_step_*.csv (benchmarks/train_step.py) and
qlora_memory_*.csv (benchmarks/qlora_memory.py) in that folder, writes summary.md there and prints it. What a phase
did not produce (it failed, ran out of time or did not run) is reported as missing. Targets are measured here, never
asserted in a timed test.
"""

import argparse
import csv
import importlib.metadata
import re
from pathlib import Path

PACKAGES = ("torch", "triton", "transformers", "trl", "peft", "accelerate", "datasets", "bitsandbytes",
            "huggingface_hub", "tokenizers", "symnoise-trl")  # fmt: skip

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


def versions() -> str:
    """One line: each package's installed version (or "missing"), after importing the ones the check runs on."""
    # A broken install fails here, in the install phase.
    import datasets  # noqa: F401
    import peft  # noqa: F401
    import trl  # noqa: F401

    import symnoise_trl  # noqa: F401

    def version(name: str) -> str:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "missing"

    return "versions: " + ", ".join(f"{name} {version(name)}" for name in PACKAGES)


def log_section(folder: Path, phase: str) -> list[str]:
    """The lines gpu_check.log holds for `phase` (between its `== phase` header and its status line)."""
    path = folder / "gpu_check.log"
    lines = path.read_text(errors="replace").splitlines() if path.exists() else []
    inside, found = False, []
    for line in lines:
        if line.startswith(f"== phase {phase} (") or line.startswith(f"== phase {phase}:"):
            inside = line.startswith(f"== phase {phase} (")
            continue
        if inside:
            found.append(line)
    return found


def phase_rows(folder: Path) -> list[dict]:
    path = folder / "phases.csv"
    if not path.exists():
        return []
    with open(path) as f:
        return list(csv.DictReader(f))


def test_counts(folder: Path) -> dict[str, int] | None:
    """passed / failed / skipped / errors of pytest's last summary line in the tests phase, or None without one."""
    lines = [line for line in log_section(folder, "tests") if re.search(r"\d+ (passed|failed|error)", line)]
    if not lines:
        return None
    counts = {k: 0 for k in ("passed", "failed", "skipped", "errors")}
    for number, word in re.findall(r"(\d+) (passed|failed|skipped|errors?)", lines[-1]):
        counts["errors" if word.startswith("error") else word] = int(number)
    return counts


def summary(folder: Path) -> str:
    lines = [f"# GPU check: {device(folder)}", ""]
    found = [line for line in log_section(folder, "install") if line.startswith("versions: ")]
    if found:
        lines += [found[-1].removeprefix("versions: "), ""]
    phases = phase_rows(folder)
    if phases:
        lines += ["| phase | status | seconds | limit (s) |", "|---|---|---|---|"]
        lines += [f"| {r['phase']} | {r['status']} | {r['seconds']} | {r['limit_s']} |" for r in phases]
        lines.append("")
    lines += ["| figure | measured | target | met |", "|---|---|---|---|"]
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


def device(folder: Path) -> str:
    """The device the benchmarks named in their CSVs, else the folder's name."""
    for path in sorted(folder.glob("*.csv")):
        with open(path) as f:
            for row in csv.DictReader(f):
                if row.get("device"):
                    return row["device"]
    return folder.resolve().name.removeprefix("gpu_")


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, nargs="?", help="a gpu_check results folder")
    parser.add_argument("--versions", action="store_true", help="print the versions of the packages the check uses")
    args = parser.parse_args(argv)
    if args.versions:
        text = versions()
        print(text)
        return text
    if args.folder is None or not args.folder.is_dir():
        parser.error(f"{args.folder} is not a folder")
    text = summary(args.folder)
    (args.folder / "summary.md").write_text(text)
    print(text)
    return text


if __name__ == "__main__":
    main()
