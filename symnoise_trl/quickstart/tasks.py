"""Quickstart: the instruction data, procedurally generated tasks whose answers can be checked exactly.

Ten task families (arithmetic, sorting, string transforms, unit conversion, formatting), each a prompt and a
completion that starts with a space (so BPE tokens do not merge across the boundary). The generator is
deterministic; the shipped files in `symnoise_trl/quickstart/data/` are its output:

    python -m symnoise_trl.quickstart.tasks
"""

import argparse
import json
import random
from pathlib import Path

DATA_DIR = Path(__file__).parent / "data"
WORDS = (
    "apple river stone garden planet window silver forest candle market bridge orange winter rocket pencil valley "
    "coffee dragon mirror harbor basket cloud desert engine feather guitar helmet island jacket kettle lemon meadow "
    "needle ocean pepper quartz rabbit saddle tunnel umbrella velvet walnut yellow zebra anchor bottle castle dinner "
    "elbow falcon ginger hammer insect jungle kitten ladder magnet napkin oyster parrot rocket sugar tomato violin "
    "wizard yogurt"
).split()
UNITS = [("km", "m", 1000), ("m", "cm", 100), ("kg", "g", 1000), ("hours", "minutes", 60), ("minutes", "seconds", 60)]


def _numbers(rng: random.Random, low: int = 0, high: int = 99) -> list[int]:
    return [rng.randint(low, high) for _ in range(rng.randint(3, 6))]


def _add(rng):
    a, b = rng.randint(0, 99), rng.randint(0, 99)
    return f"What is {a} + {b}?", str(a + b)


def _subtract(rng):
    a, b = sorted((rng.randint(0, 99), rng.randint(0, 99)), reverse=True)
    return f"What is {a} - {b}?", str(a - b)


def _multiply(rng):
    a, b = rng.randint(2, 12), rng.randint(2, 12)
    return f"What is {a} * {b}?", str(a * b)


def _sort(rng):
    numbers = _numbers(rng)
    return "Sort ascending: " + " ".join(map(str, numbers)), " ".join(map(str, sorted(numbers)))


def _largest(rng):
    numbers = _numbers(rng)
    return "Largest of: " + " ".join(map(str, numbers)), str(max(numbers))


def _reverse(rng):
    word = rng.choice(WORDS)
    return f"Reverse the letters of {word}", word[::-1]


def _uppercase(rng):
    words = rng.sample(WORDS, 2)
    return "Uppercase: " + " ".join(words), " ".join(words).upper()


def _count_letters(rng):
    word = rng.choice(WORDS)
    return f"How many letters in {word}?", str(len(word))


def _convert(rng):
    big, small, factor = rng.choice(UNITS)
    value = rng.randint(1, 30)
    return f"Convert {value} {big} to {small}", f"{value * factor} {small}"


def _format_date(rng):
    year, month, day = rng.randint(1990, 2030), rng.randint(1, 12), rng.randint(1, 28)
    return f"Write {year}-{month:02d}-{day:02d} as DD/MM/YYYY", f"{day:02d}/{month:02d}/{year}"


TASKS = {
    "add": _add,
    "subtract": _subtract,
    "multiply": _multiply,
    "sort": _sort,
    "largest": _largest,
    "reverse": _reverse,
    "uppercase": _uppercase,
    "count_letters": _count_letters,
    "convert": _convert,
    "format_date": _format_date,
}


def generate(n_train: int = 2000, n_test: int = 200, seed: int = 0) -> dict[str, list[dict]]:
    """{"train": [...], "test": [...]}: examples {"task", "prompt", "completion"}; no prompt is in both splits.

    Each new prompt goes to the test split with probability n_test / (n_train + n_test), so both splits cover every
    task, including the ones with few distinct prompts.
    """
    rng = random.Random(seed)
    seen, splits = set(), {"train": [], "test": []}
    p_test = n_test / (n_train + n_test)
    while len(splits["train"]) < n_train or len(splits["test"]) < n_test:
        task = rng.choice(sorted(TASKS))
        prompt, answer = TASKS[task](rng)
        if prompt in seen:
            continue
        seen.add(prompt)
        to_test = len(splits["train"]) >= n_train or (rng.random() < p_test and len(splits["test"]) < n_test)
        splits["test" if to_test else "train"].append({"task": task, "prompt": prompt, "completion": " " + answer})
    return splits


def is_correct(example: dict, generated: str) -> bool:
    """Exact match of a generated completion with the example's answer, ignoring surrounding white space."""
    return generated.strip() == example["completion"].strip()


def write(out_dir: Path, splits: dict[str, list[dict]]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for split, rows in splits.items():
        with open(out_dir / f"{split}.jsonl", "w") as f:
            f.writelines(json.dumps(row) + "\n" for row in rows)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Generate the quickstart instruction data set.")
    parser.add_argument("--out", type=Path, default=DATA_DIR, help="output folder for train.jsonl and test.jsonl")
    parser.add_argument("--n-train", type=int, default=2000)
    parser.add_argument("--n-test", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    write(args.out, generate(args.n_train, args.n_test, args.seed))
    print(f"wrote {args.n_train} train and {args.n_test} test examples to {args.out}")


if __name__ == "__main__":
    main()
