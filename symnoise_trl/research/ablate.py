"""`symnoise-ablate`: the paper's Table 4 noise ablation on one model and data set, with one budget and seed.

Settings: none, NEFTune alpha 5/10/15 (transformers' hook), Gaussian and Rademacher ("Bernoulli") noise at alpha 5
(one-sided, RMS-matched to SymNoise), and SymNoise alpha 5. Each is trained with `symnoise-sft` (same steps, same
sequences per step, same seed), evaluated with `symnoise_trl.research.evaluate`, and summarised in report.md (+ a
plot).

    symnoise-ablate --output_dir ablation                       # CPU default: the quickstart model and tasks
    symnoise-ablate --settings none,symnoise_5 --output_dir ab -- --model_name_or_path Qwen/Qwen2.5-0.5B ...

Arguments after `--` go to every `symnoise-sft` run (they override the defaults below).
"""

import argparse
import json
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
# The quickstart recipe: the CPU default of about 10 minutes for all seven settings.
DEFAULT_TRAINING = [
    "--num_train_epochs", "6", "--per_device_train_batch_size", "8", "--learning_rate", "3e-3",
    "--lr_scheduler_type", "cosine", "--warmup_steps", "10", "--max_length", "64", "--logging_steps", "50",
    "--save_strategy", "no", "--bf16", "false", "--gradient_checkpointing", "false", "--report_to", "none",
    "--disable_tqdm", "true",
]  # fmt: skip
COLUMNS = ["setting", "train_loss", "heldout_loss", "exact_match", "mean_chars", "mean_whitespace_tokens",
           "rep2_percent", "log_diversity", "train_seconds"]  # fmt: skip


def run_setting(name: str, output_dir: Path, seed: int, extra: list[str], eval_prompts, eval_limit: int | None,
                max_new_tokens: int) -> dict:  # fmt: skip
    from ..cli import run
    from .evaluate import evaluate

    model_dir = output_dir / name
    start = time.perf_counter()
    trainer = run([*DEFAULT_TRAINING, "--seed", str(seed), *SETTINGS[name], *extra, "--output_dir", str(model_dir)])
    seconds = time.perf_counter() - start
    train_loss = next(h["train_loss"] for h in reversed(trainer.state.log_history) if "train_loss" in h)
    metrics = evaluate(model_dir, eval_prompts, output_dir=model_dir / "eval", limit=eval_limit,
                       max_new_tokens=max_new_tokens)  # fmt: skip
    base = trainer.model.config.name_or_path
    base = Path(base).name if Path(base).exists() else base  # a local folder: its name, not the machine's path
    return {**metrics, "model": base, "setting": name, "train_loss": train_loss, "train_seconds": seconds}


def write_report(rows: list[dict], output_dir: Path, seed: int, extra: list[str]) -> Path:
    lines = [
        "# Noise ablation",
        "",
        f"Base model: `{rows[0]['model']}`, trained per setting with the same steps, sequences per step and seed"
        f" ({seed}); extra arguments: `{' '.join(extra) or 'none'}`. Evaluated on {rows[0]['n_prompts']} held-out"
        " prompts (greedy). exact_match and heldout_loss need reference completions.",
        "",
        table(rows, COLUMNS, digits=4),
    ]
    if _plot(rows, output_dir / "report.png"):
        lines += ["", "![exact match and held-out loss per setting](report.png)"]
    path = output_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    (output_dir / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
    return path


def _plot(rows: list[dict], path: Path) -> bool:
    plt = pyplot()
    if plt is None:
        return False
    keys = [k for k in ("exact_match", "heldout_loss", "rep2_percent") if k in rows[0]]
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.2), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        ax.bar([r["setting"] for r in rows], [r[key] for r in rows])
        ax.set_title(key)
        ax.tick_params(axis="x", rotation=60, labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="symnoise-ablate", description=__doc__.splitlines()[0])
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--settings", default=",".join(SETTINGS), help=f"comma-separated, from {list(SETTINGS)}")
    parser.add_argument("--seed", type=int, default=0)
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
    output_dir = Path(args.output_dir)
    rows = [
        run_setting(s, output_dir, args.seed, extra, args.eval_prompts, args.eval_limit, args.max_new_tokens)
        for s in settings
    ]
    path = write_report(rows, output_dir, args.seed, extra)
    print(path.read_text())
    print(f"Report: {path}")


if __name__ == "__main__":
    main()
