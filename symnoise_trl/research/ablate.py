"""Research: `symnoise-ablate`, the paper's Table 4 noise ablation on one model and data set, one budget, seeds.

Settings (by default the paper's): none, NEFTune alpha 5/10/15 (transformers' hook), Gaussian and Rademacher
("Bernoulli") noise at alpha 5 (one-sided, RMS-matched to SymNoise), and SymNoise alpha 5; besides them
`neftune_5_equal_compute`, NEFTune on twice the batch for as many steps: as many sequences through the model as
SymNoise's two copies. Each is trained with `symnoise-sft` once per seed (the same steps and sequences per step for
every setting, the doubled batch aside), evaluated with `symnoise_trl.research.evaluate` (`--sensitivity_alphas` adds
the sensitivity terms), and summarised in report.md as the mean and standard deviation over the seeds (+ a plot with
the spread), so that a difference can be read against the noise of the seed.

    symnoise-ablate --output_dir ablation                       # CPU default: the quickstart model and tasks
    symnoise-ablate --settings none,symnoise_5 --seeds 0,1 --output_dir ab -- --model_name_or_path Qwen/Qwen2.5-0.5B

Arguments after `--` go to every `symnoise-sft` run (they override the defaults below).
"""

import argparse
import json
import statistics
import time
from pathlib import Path

from . import sensitivity
from .report import pyplot, table

SETTINGS = {
    "none": [],
    "neftune_5": ["--neftune_noise_alpha", "5"],
    "neftune_10": ["--neftune_noise_alpha", "10"],
    "neftune_15": ["--neftune_noise_alpha", "15"],
    "gaussian_5": ["--symnoise_alpha", "5", "--symnoise_distribution", "gaussian"],
    "rademacher_5": ["--symnoise_alpha", "5", "--symnoise_distribution", "rademacher"],
    "symnoise_5": ["--symnoise_alpha", "5"],
    # NEFTune on twice the per-device batch: as many sequences through the model per step as SymNoise's two copies, so
    # that SymNoise is compared with what its 2x compute would buy a one-sided noise.
    "neftune_5_equal_compute": ["--neftune_noise_alpha", "5"],
}
DOUBLED_BATCH = {"neftune_5_equal_compute"}
TABLE_4 = [name for name in SETTINGS if name not in DOUBLED_BATCH]  # the default: the paper's settings
SENSITIVITY_PREFIXES = ("clean_loss_token", *(f"{d}_" for d in sensitivity.DIRECTIONS))
# The quickstart recipe (examples/quickstart.yaml, without checkpoints).
DEFAULT_TRAINING = [
    "--num_train_epochs", "6", "--per_device_train_batch_size", "8", "--learning_rate", "3e-3",
    "--lr_scheduler_type", "cosine", "--warmup_steps", "10", "--max_length", "64", "--logging_steps", "50",
    "--save_strategy", "no", "--bf16", "false", "--gradient_checkpointing", "false", "--report_to", "none",
    "--disable_tqdm", "true",
]  # fmt: skip
METRICS = ["heldout_loss", "exact_match", "mean_chars", "mean_whitespace_tokens", "rep2_percent", "log_diversity",
           "train_loss", "train_seconds"]  # fmt: skip
UNTRAINED = "untrained"  # the report's row for the base model (--evaluate_base)
BASELINE = "none"  # what the report compares every other setting with, seed by seed


def resolve_training(extra: list[str], output_dir: Path):
    """symnoise-sft's own reading of DEFAULT_TRAINING + `extra` (config files and spellings included), checked before
    the first run: its (training arguments, model arguments). A bad argument exits 2 with symnoise-sft's message."""
    from ..cli.command import make_parser, parse_command_line

    parser = make_parser()
    try:
        command = parse_command_line(parser, [*DEFAULT_TRAINING, *extra, "--output_dir", str(output_dir)])
    except ValueError as error:
        parser.error(str(error))
    return command.training_args, command.model_args


def setting_arguments(name: str, training) -> list[str]:
    """The `symnoise-sft` arguments of a setting, after DEFAULT_TRAINING and the user's (`training`: their reading).
    A doubled batch doubles the epochs too, so that it runs as many steps (what --max_steps fixes anyway)."""
    arguments = list(SETTINGS[name])
    if name in DOUBLED_BATCH:
        arguments += ["--per_device_train_batch_size", str(2 * training.per_device_train_batch_size),
                      "--num_train_epochs", str(2 * training.num_train_epochs)]  # fmt: skip
    return arguments


def term_key(direction: str, term: str, alpha: str, unit: str = "token") -> str:
    """A sensitivity term's flat metric name: "<direction>_<term>_<token|sequence>_<alpha>"."""
    return f"{direction}_{term}_{unit}_{alpha}"


def flat_sensitivity(metrics: dict) -> dict:
    """`metrics` with symnoise-evaluate's sensitivity terms flattened (`term_key`) and "clean_loss_token" in place of
    the nested "sensitivity"."""
    metrics = dict(metrics)
    found = metrics.pop("sensitivity", None)
    if found is None:
        return metrics
    metrics["clean_loss_token"] = found["clean_loss_token"]
    for direction in sensitivity.DIRECTIONS:
        for alpha, row in found[direction].items():
            metrics.update({term_key(direction, term, alpha, unit): row[f"{term}_{unit}"]
                            for term in sensitivity.TERMS for unit in ("token", "sequence")})  # fmt: skip
    return metrics


def run_setting(name: str, output_dir: Path, seed: int, extra: list[str], training, evaluation: dict) -> dict:
    """Train one setting with one seed into output_dir/<name>/seed<seed>, evaluate it (`evaluation`: keyword
    arguments of `evaluate`); returns its metrics."""
    from ..cli.command import run
    from .evaluate import evaluate

    model_dir = output_dir / name / f"seed{seed}"
    start = time.perf_counter()
    arguments = [*DEFAULT_TRAINING, "--seed", str(seed), *extra, *setting_arguments(name, training)]
    trainer = run([*arguments, "--output_dir", str(model_dir)])
    seconds = time.perf_counter() - start
    train_loss = next(h["train_loss"] for h in reversed(trainer.state.log_history) if "train_loss" in h)
    metrics = flat_sensitivity(evaluate(model_dir, output_dir=model_dir / "eval", **evaluation))
    return {**metrics, "model": _shown(trainer.model.config.name_or_path), "setting": name, "seed": seed,
            "train_loss": train_loss, "train_seconds": seconds, "steps": trainer.state.global_step}  # fmt: skip


def evaluate_base(output_dir: Path, model, evaluation: dict) -> dict:
    """The base model that every setting starts from (`model`: symnoise-sft's model arguments), evaluated as it is:
    the report's "untrained" row."""
    from ..quickstart.tiny_model import tiny_model_path
    from .evaluate import evaluate

    base = model.model_name_or_path or str(tiny_model_path())
    metrics = flat_sensitivity(evaluate(base, output_dir=output_dir / UNTRAINED / "eval", **evaluation))
    return {**metrics, "model": _shown(base), "setting": UNTRAINED, "seed": 0}


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
        for metric in [*METRICS, *(key for key in group[0] if key.startswith(SENSITIVITY_PREFIXES))]:
            if metric in group[0]:
                values = [r[metric] for r in group]
                row[metric] = statistics.fmean(values)
                row[f"{metric}_sd"] = statistics.stdev(values) if len(values) > 1 else 0.0
        summary.append(row)
    return summary


def _cells(summary: list[dict], columns: list[str]) -> list[dict]:
    return [{"setting": row["setting"], "seeds": row["seeds"],
             **{m: f"{row[m]:.4g} ± {row[m + '_sd']:.2g}" for m in columns[2:] if m in row}}
            for row in summary]  # fmt: skip


def write_report(runs: list[dict], output_dir: Path, seeds: list[int], extra: list[str]) -> Path:
    summary = summarise(runs)
    trained = [row for row in summary if row["setting"] != UNTRAINED]
    columns = ["setting", "seeds", *(m for m in METRICS if m in trained[0])]
    cells = _cells(summary, columns)
    lines = [
        "# Noise ablation",
        "",
        f"Base model: `{runs[0]['model']}`, trained per setting with the same steps and sequences per step (twice"
        f" the sequences for {', '.join(sorted(DOUBLED_BATCH))}), seeds"
        f" {', '.join(map(str, seeds))}; extra arguments: `{' '.join(map(_shown, extra)) or 'none'}`. Evaluated on"
        f" {runs[0]['n_prompts']} held-out prompts (greedy). Each cell is the mean ± the sample standard deviation"
        " over the seeds. exact_match and heldout_loss need reference completions.",
        "",
        table(cells, columns),
    ]
    alphas = _sensitivity_alphas(summary[0])
    if alphas:
        columns = ["setting", "seeds", "clean_loss_token"]
        columns += [term_key(d, t, a) for d in sensitivity.DIRECTIONS for t in sensitivity.TERMS for a in alphas]
        lines += [
            "",
            "## Sensitivity",
            "",
            "How far the held-out loss moves along a fixed noise direction at the training noise's scale"
            " (`symnoise_trl/research/sensitivity.py`): per completion token, the first-order term |L+ - L-| / 2 and"
            " the curvature term (L+ + L- - 2 L0) / 2 for each direction and alpha, and the clean loss of the same"
            " tokens. Per-sequence terms are in results.json.",
            "",
            table(_cells(summary, columns), columns),
        ]
    keys = ["heldout_loss", *(term_key("rademacher", t, a) for t in sensitivity.TERMS for a in alphas),
            "mean_whitespace_tokens", "rep2_percent"]  # fmt: skip
    paired = paired_differences(runs, keys)
    if paired:
        lines += [
            "",
            f"## Against `{BASELINE}`, seed by seed",
            "",
            f"A seed fixes the data order and the initialisation, so each run differs from `{BASELINE}` with the same"
            " seed by its noise alone: each cell is the mean ± the sample standard deviation over the seeds of (the"
            f" setting - `{BASELINE}`), and in brackets how many seeds of how many have it below zero.",
            "",
            table(paired, ["setting", "seeds", *keys]),
        ]
    if _plot(summary, output_dir / "report.png"):
        lines += ["", "![held-out loss, exact match and 2-gram repetition per setting (mean and spread)](report.png)"]
    path = output_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    (output_dir / "results.json").write_text(json.dumps({"summary": summary, "runs": runs}, indent=2) + "\n")
    return path


def paired_differences(runs: list[dict], keys: list[str]) -> list[dict]:
    """Per trained setting other than BASELINE: each of `keys` as (the setting's run - BASELINE's run with the same
    seed), summarised over the seeds both have ("mean ± sd [n below zero/n]"); [] without BASELINE or another."""
    baseline = {r["seed"]: r for r in runs if r["setting"] == BASELINE}
    rows = []
    for setting in dict.fromkeys(r["setting"] for r in runs if r["setting"] not in (BASELINE, UNTRAINED)):
        group = [r for r in runs if r["setting"] == setting and r["seed"] in baseline]
        if not group:
            continue
        row = {"setting": setting, "seeds": len(group)}
        for key in (k for k in keys if k in group[0]):
            deltas = [r[key] - baseline[r["seed"]][key] for r in group]
            spread = statistics.stdev(deltas) if len(deltas) > 1 else 0.0
            below = sum(d < 0 for d in deltas)
            row[key] = f"{statistics.fmean(deltas):+.3g} ± {spread:.2g} [{below}/{len(deltas)}]"
        rows.append(row)
    return rows


def _sensitivity_alphas(row: dict) -> list[str]:
    """The alphas of a summary row's sensitivity terms ("rademacher_first_order_token_5" -> "5"), in order."""
    prefix = term_key("rademacher", "first_order", "")
    keys = [key for key in row if key.startswith(prefix) and not key.endswith("_sd")]
    return sorted((key.rsplit("_", 1)[1] for key in keys), key=float)


def _plot(summary: list[dict], path: Path) -> bool:
    plt = pyplot()
    if plt is None:
        return False
    # exact match is left out where no answer can match (free-form references: every run 0)
    keys = [k for k in ("heldout_loss", "exact_match", "rep2_percent") if any(r.get(k) for r in summary)]
    alphas = _sensitivity_alphas(summary[0])
    panels = [(d, term) for term in sensitivity.TERMS for d in sensitivity.DIRECTIONS] if alphas else []
    if not keys and not panels:
        return False
    columns = max(len(keys), len(panels))
    fig, axes = plt.subplots(1 + bool(panels), columns, figsize=(4.2 * columns, 3.6 * (1 + bool(panels))),
                             squeeze=False)  # fmt: skip
    for ax, key in zip(axes[0], keys, strict=False):
        ax.bar([r["setting"] for r in summary], [r[key] for r in summary], yerr=[r[f"{key}_sd"] for r in summary],
               capsize=3)  # fmt: skip
        ax.set_title(f"{key} (mean ± sd)")
        ax.tick_params(axis="x", rotation=60, labelsize=8)
    # The terms divided by alpha (first order) and alpha^2 (curvature): flat where the leading term rules, and the
    # settings' differences readable at every alpha.
    for ax, (direction, term) in zip(axes[-1], panels, strict=False):
        power = 1 if term == "first_order" else 2
        for i, row in enumerate(summary):
            keys_at = [term_key(direction, term, a) for a in alphas]
            x = [float(a) * (1 + 0.03 * (i - len(summary) / 2)) for a in alphas]  # side by side
            ax.errorbar(x, [row[k] / float(a) ** power for k, a in zip(keys_at, alphas, strict=True)],
                        yerr=[row[f"{k}_sd"] / float(a) ** power for k, a in zip(keys_at, alphas, strict=True)],
                        marker="o", capsize=3, label=row["setting"])  # fmt: skip
        ax.set_xscale("log")
        ax.set_xticks([float(a) for a in alphas], alphas)
        ax.minorticks_off()
        ax.set_xlabel("alpha")
        ax.set_title(f"{term.replace('_', '-')} term per token / alpha^{power}\n{direction} direction", fontsize=9)
        ax.legend(fontsize=6)
    for ax in [*axes[0][len(keys) :], *(axes[-1][len(panels) :] if panels else [])]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="symnoise-ablate", description=__doc__.splitlines()[0])
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--settings", default=",".join(TABLE_4), help=f"comma-separated, from {list(SETTINGS)}")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated; one run per setting and seed")
    parser.add_argument(
        "--eval_prompts",
        default=None,
        help="prompts file, or sharegpt (held-out ShareGPT); default: the quickstart held-out split",
    )
    parser.add_argument("--eval_limit", type=int, default=None, help="evaluate the first N held-out prompts only")
    parser.add_argument("--max_new_tokens", type=int, default=32)
    parser.add_argument(
        "--eval_max_length",
        type=int,
        default=None,
        help="symnoise-evaluate's --max_length: leave out longer prompts, cut scored sequences",
    )
    parser.add_argument("--chat_template", action="store_true", help="evaluate with the tokenizer's chat template")
    parser.add_argument(
        "--sensitivity_alphas",
        default=None,
        metavar="ALPHAS",
        help="symnoise-evaluate's --sensitivity_alphas: comma-separated alphas, e.g. 2,5,10",
    )
    parser.add_argument("--sensitivity_seed", type=int, default=0, help="symnoise-evaluate's --sensitivity_seed")
    parser.add_argument(
        "--evaluate_base",
        action="store_true",
        help="also evaluate the base model as it is (the report's 'untrained' row)",
    )
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
    from .evaluate import check_options, load_prompts

    try:  # everything the evaluations take, before the first run trains
        alphas = sensitivity.parse_alphas(args.sensitivity_alphas) if args.sensitivity_alphas is not None else []
        check_options(args.eval_max_length, alphas, args.sensitivity_seed)
        prompts = load_prompts(args.eval_prompts) if args.eval_prompts else None
    except ValueError as error:  # it names the option ("sensitivity_alphas must be ...") or the prompts
        parser.error(f"--{error}" if str(error).startswith(("max_length", "sensitivity")) else str(error))
    evaluation = dict(prompts=prompts, limit=args.eval_limit, max_new_tokens=args.max_new_tokens,
                      max_length=args.eval_max_length, chat_template=args.chat_template, sensitivity_alphas=alphas,
                      sensitivity_seed=args.sensitivity_seed)  # fmt: skip
    output_dir = Path(args.output_dir)
    training, model = resolve_training(extra, output_dir)
    runs = []
    for setting, seed in [(s, seed) for s in settings for seed in seeds]:
        runs.append(run_setting(setting, output_dir, seed, extra, training, evaluation))
        write_report(runs, output_dir, seeds, extra)  # after every run: a long ablation shows its progress
    if args.evaluate_base:
        runs.append(evaluate_base(output_dir, model, evaluation))
    path = write_report(runs, output_dir, seeds, extra)
    print(path.read_text())
    print(f"Report: {path}")


if __name__ == "__main__":
    main()
