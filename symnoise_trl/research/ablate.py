"""Research: `symnoise-ablate`, the paper's Table 4 noise ablation on one model and data set, one budget, seeds.

Settings: none, NEFTune alpha 5/10/15 (transformers' hook), Gaussian and Rademacher ("Bernoulli") noise at alpha 5
(one-sided, RMS-matched to SymNoise), and SymNoise alpha 5. Each is trained with `symnoise-sft` once per seed (same
steps and sequences per step for every setting), evaluated with `symnoise_trl.research.evaluate`, and summarised in
report.md as the mean and standard deviation over the seeds (+ a plot with the spread), so that a difference can be
read against the noise of the seed.

    symnoise-ablate --output_dir ablation                       # CPU default: the quickstart model and tasks
    symnoise-ablate --settings none,symnoise_5 --seeds 0,1 --output_dir ab -- --model_name_or_path Qwen/Qwen2.5-0.5B

Arguments after `--` go to every `symnoise-sft` run (they override the defaults below).
"""

import argparse
import json
import statistics
import time
from pathlib import Path

from .report import pyplot, table

SETTINGS = {
    "none": [],
    "neftune_5": ["--neftune_noise_alpha", "5"],
    "neftune_10": ["--neftune_noise_alpha", "10"],
    "neftune_15": ["--neftune_noise_alpha", "15"],
    "gaussian_5": ["--symnoise_alpha", "5", "--symnoise_distribution", "gaussian"],
    "rademacher_5": ["--symnoise_alpha", "5", "--symnoise_distribution", "rademacher"],
    "symnoise_5": ["--symnoise_alpha", "5"],
}
# The quickstart recipe (examples/quickstart.yaml, without checkpoints).
DEFAULT_TRAINING = [
    "--num_train_epochs", "6", "--per_device_train_batch_size", "8", "--learning_rate", "3e-3",
    "--lr_scheduler_type", "cosine", "--warmup_steps", "10", "--max_length", "64", "--logging_steps", "50",
    "--save_strategy", "no", "--bf16", "false", "--gradient_checkpointing", "false", "--report_to", "none",
    "--disable_tqdm", "true",
]  # fmt: skip
METRICS = ["heldout_loss", "exact_match", "mean_chars", "mean_whitespace_tokens", "rep2_percent", "log_diversity",
           "train_loss", "train_seconds"]  # fmt: skip


def run_setting(name: str, output_dir: Path, seed: int, extra: list[str], eval_prompts, eval_limit: int | None,
                max_new_tokens: int) -> dict:  # fmt: skip
    """Train one setting with one seed into output_dir/<name>/seed<seed>, evaluate it; returns its metrics."""
    from ..cli.command import run
    from .evaluate import evaluate

    model_dir = output_dir / name / f"seed{seed}"
    start = time.perf_counter()
    trainer = run([*DEFAULT_TRAINING, "--seed", str(seed), *SETTINGS[name], *extra, "--output_dir", str(model_dir)])
    seconds = time.perf_counter() - start
    train_loss = next(h["train_loss"] for h in reversed(trainer.state.log_history) if "train_loss" in h)
    metrics = evaluate(model_dir, eval_prompts, output_dir=model_dir / "eval", limit=eval_limit,
                       max_new_tokens=max_new_tokens)  # fmt: skip
    return {**metrics, "model": _shown(trainer.model.config.name_or_path), "setting": name, "seed": seed,
            "train_loss": train_loss, "train_seconds": seconds}  # fmt: skip


def _shown(argument: str) -> str:
    """An argument as the report shows it: a local file or folder by its name, not the machine's path."""
    return Path(argument).name if Path(argument).exists() else argument


def summarise(runs: list[dict]) -> list[dict]:
    """Per setting (in run order): the number of seeds, and each metric's mean and sample standard deviation (0 for
    one seed). A metric that is infinite in a run (log-diversity when nothing repeats) has an infinite mean."""
    settings = list(dict.fromkeys(r["setting"] for r in runs))
    summary = []
    for setting in settings:
        group = [r for r in runs if r["setting"] == setting]
        row = {"setting": setting, "seeds": len(group)}
        for metric in METRICS:
            if metric in group[0]:
                values = [r[metric] for r in group]
                row[metric] = statistics.fmean(values)
                row[f"{metric}_sd"] = statistics.stdev(values) if len(values) > 1 else 0.0
        summary.append(row)
    return summary


def write_report(runs: list[dict], output_dir: Path, seeds: list[int], extra: list[str]) -> Path:
    summary = summarise(runs)
    columns = ["setting", "seeds", *(m for m in METRICS if m in summary[0])]
    cells = [
        {"setting": row["setting"], "seeds": row["seeds"],
         **{m: f"{row[m]:.4g} ± {row[m + '_sd']:.2g}" for m in columns[2:]}}
        for row in summary
    ]  # fmt: skip
    lines = [
        "# Noise ablation",
        "",
        f"Base model: `{runs[0]['model']}`, trained per setting with the same steps and sequences per step, seeds"
        f" {', '.join(map(str, seeds))}; extra arguments: `{' '.join(map(_shown, extra)) or 'none'}`. Evaluated on"
        f" {runs[0]['n_prompts']} held-out prompts (greedy). Each cell is the mean ± the sample standard deviation"
        " over the seeds. exact_match and heldout_loss need reference completions.",
        "",
        table(cells, columns),
    ]
    if _plot(summary, output_dir / "report.png"):
        lines += ["", "![held-out loss, exact match and 2-gram repetition per setting (mean and spread)](report.png)"]
    path = output_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    (output_dir / "results.json").write_text(json.dumps({"summary": summary, "runs": runs}, indent=2) + "\n")
    return path


def _plot(summary: list[dict], path: Path) -> bool:
    plt = pyplot()
    if plt is None:
        return False
    keys = [k for k in ("heldout_loss", "exact_match", "rep2_percent") if k in summary[0]]
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.4), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        ax.bar([r["setting"] for r in summary], [r[key] for r in summary], yerr=[r[f"{key}_sd"] for r in summary],
               capsize=3)  # fmt: skip
        ax.set_title(f"{key} (mean ± sd)")
        ax.tick_params(axis="x", rotation=60, labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="symnoise-ablate", description=__doc__.splitlines()[0])
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--settings", default=",".join(SETTINGS), help=f"comma-separated, from {list(SETTINGS)}")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated; one run per setting and seed")
    parser.add_argument("--eval_prompts", default=None, help="prompts file (default: the quickstart held-out split)")
    parser.add_argument("--eval_limit", type=int, default=None, help="evaluate the first N held-out prompts only")
    parser.add_argument("--max_new_tokens", type=int, default=32)
    args, extra = parser.parse_known_args(argv)
    if extra and extra[0] == "--":
        extra = extra[1:]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)} (put symnoise-sft arguments after --)")
    settings = args.settings.split(",")
    unknown = [s for s in settings if s not in SETTINGS]
    if unknown:
        parser.error(f"unknown settings {unknown}; choose from {list(SETTINGS)}")
    try:
        seeds = [int(seed) for seed in args.seeds.split(",")]
    except ValueError:
        parser.error(f"--seeds must be comma-separated integers, got {args.seeds!r}")
    output_dir = Path(args.output_dir)
    runs = [
        run_setting(s, output_dir, seed, extra, args.eval_prompts, args.eval_limit, args.max_new_tokens)
        for s in settings
        for seed in seeds
    ]
    path = write_report(runs, output_dir, seeds, extra)
    print(path.read_text())
    print(f"Report: {path}")


if __name__ == "__main__":
    main()
