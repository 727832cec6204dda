"""CLI: `symnoise-sft`, TRL's `trl sft` script with SymNoise, plus an offline default model and data set.

    symnoise-sft --config examples/quickstart.yaml
    symnoise-sft --model_name_or_path Qwen/Qwen2.5-0.5B --dataset_name trl-lib/Capybara --symnoise_alpha 5 ...

Every `trl sft` option works (parsed by `TrlParser` over TRL's `ScriptArguments`, `ModelConfig` and
`DatasetMixtureConfig`, with `SymNoiseSFTConfig` in place of `SFTConfig`). Without `--model_name_or_path` it
trains the cached tiny model of `symnoise_trl.quickstart.tiny_model`; without a data set, the shipped quickstart tasks.
"""

import argparse
import os
import sys
import warnings
from pathlib import Path
from typing import NamedTuple

from ..hf.internals import import_bitsandbytes_quietly
from ..quickstart.tasks import DATA_DIR
from .preflight import check_model, check_numbers, check_output_dir

USAGE = "symnoise-sft [--config FILE.yaml] [--symnoise_alpha ALPHA] [--model_name_or_path M] [--dataset_name D] ..."
DESCRIPTION = """\
Supervised fine-tuning with SymNoise: TRL's `trl sft` with SymNoiseSFTTrainer, so every `trl sft` option works.
Without --model_name_or_path it trains the built-in tiny model, without a data set the shipped quickstart tasks.
--dataset_name takes a Hub data set, a local folder, or a .json/.jsonl/.csv/.parquet file with the columns
'prompt' and 'completion', 'messages', or 'text'. --resume_from_checkpoint takes a checkpoint folder, or true/last
for the latest checkpoint in --output_dir. The SymNoise options come first; the others are TRL's and transformers'."""
REAL_MODEL_HINT = """\
To run the same on a real model (one GPU; docs/command-line.md has full fine-tuning and QLoRA):
  symnoise-sft --model_name_or_path Qwen/Qwen2.5-0.5B --dataset_name trl-lib/Capybara \\
      --symnoise_alpha 5 --per_device_train_batch_size 4 --gradient_accumulation_steps 8 \\
      --use_peft --lora_r 16 --output_dir Qwen2.5-0.5B-SymNoise"""
LATEST_CHECKPOINT = ("true", "last")


def symnoise_options_help(formatter_class) -> str:
    """The --symnoise_* options as argparse lists them, for the top of --help: a parser of SymNoiseArguments alone
    formats them (HfArgumentParser puts every option of the config in one group, where they would be lost)."""
    from transformers import HfArgumentParser

    from ..trainers.arguments import SymNoiseArguments

    listing = HfArgumentParser(SymNoiseArguments, add_help=False, formatter_class=formatter_class).format_help()
    return "SymNoise options:\n" + listing.split("options:\n", 1)[1].rstrip()


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Defaults after each option (HfArgumentParser's formatter), and the description (with the SymNoise options
    listing) as written."""


def make_parser():
    from trl import DatasetMixtureConfig, ModelConfig, ScriptArguments, TrlParser

    from ..trainers.sft_config import SymNoiseSFTConfig

    class SymNoiseParser(TrlParser):
        def error(self, message):  # the message and a pointer, not argparse's usage of ~900 options
            self.exit(2, f"{self.prog}: error: {message}\n(`{self.prog} --help` lists the options)\n")

    return SymNoiseParser(
        (ScriptArguments, SymNoiseSFTConfig, ModelConfig, DatasetMixtureConfig),
        prog="symnoise-sft",
        usage=USAGE,
        description=f"{DESCRIPTION}\n\n{symnoise_options_help(_HelpFormatter)}",
        formatter_class=_HelpFormatter,
    )


def load_train_eval(script_args, training_args, dataset_args):
    """The train and (when evaluating) eval splits, checked: a DataError names the data and what is wrong."""
    from trl import get_dataset

    from .data import DataError, check_sft_dataset, load_sft_dataset

    if dataset_args.datasets:
        dataset, source = get_dataset(dataset_args), "the dataset mixture"
    else:
        name = script_args.dataset_name or str(DATA_DIR)
        dataset = load_sft_dataset(name, script_args.dataset_config, script_args.dataset_streaming)
        source = script_args.dataset_name or "the quickstart tasks"
    splits = [script_args.dataset_train_split]
    if training_args.eval_strategy != "no":
        splits.append(script_args.dataset_test_split)
    for split in splits:
        if split not in dataset:
            raise DataError(f"{source} has no split {split!r} (it has {list(dataset)})")
        check_sft_dataset(dataset[split], f"{source} (split {split!r})", training_args.dataset_text_field)
    return dataset[splits[0]], dataset[splits[1]] if len(splits) > 1 else None


def resume_argument(value: str | None, output_dir: str):
    """--resume_from_checkpoint as Trainer.train takes it: None, or a complete checkpoint folder (true/last: the newest
    complete `checkpoint-N` in `output_dir`, saying which newer ones it skipped and why). Raises ValueError with the
    fix when there is nothing to resume from, or the folder named is not a complete checkpoint."""
    from ..hf.checkpoint_files import checkpoint_problem, newest_complete_checkpoint

    value = str(value)  # a YAML config gives true/false as booleans
    if value.lower() in ("false", "none", ""):
        return None
    if value.lower() not in LATEST_CHECKPOINT:
        problem = checkpoint_problem(value)
        if problem is not None:
            raise ValueError(
                f"--resume_from_checkpoint {value}: not a complete checkpoint ({problem}); give a complete "
                "checkpoint-N folder, or true/last for the newest complete one in --output_dir"
            )
        return value
    folder, skipped = newest_complete_checkpoint(output_dir)
    for line in skipped:
        print(line)
    if folder is not None:
        return folder
    raise ValueError(
        f"--resume_from_checkpoint {value}: --output_dir {output_dir} has no complete checkpoint-N folder"
    )


class CommandLine(NamedTuple):
    """What `symnoise-sft` was asked to do, parsed and checked."""

    script_args: object  # trl.ScriptArguments
    training_args: object  # SymNoiseSFTConfig
    model_args: object  # trl.ModelConfig
    dataset_args: object  # trl.DatasetMixtureConfig
    resume: str | None  # the checkpoint folder to resume from


def parse_command_line(parser, argv=None) -> CommandLine:
    """Parse `argv` (default: the command line) and check what the dataclasses cannot, before anything loads: exits 2
    on an argparse error, raises ValueError (a config's __post_init__, the output folder, a count or step number, the
    model, a missing checkpoint, conflicting data options)."""
    from huggingface_hub import constants

    script_args, training_args, model_args, dataset_args = parser.parse_args_and_config(args=argv)
    check_output_dir(training_args.output_dir)
    check_numbers(training_args)
    if model_args.model_name_or_path is not None:
        check_model(model_args.model_name_or_path, offline=constants.HF_HUB_OFFLINE)
    resume = resume_argument(training_args.resume_from_checkpoint, training_args.output_dir)
    if dataset_args.datasets and script_args.dataset_name:
        raise ValueError("give either --dataset_name or `datasets` (a dataset mixture), not both")
    return CommandLine(script_args, training_args, model_args, dataset_args, resume)


def build_trainer(command: CommandLine):
    """The data, checked, and a SymNoiseSFTTrainer on the model of `command` (the built-in tiny model by default).
    Raises ValueError for bad data (DataError) or a setting the trainer refuses at start-up."""
    import torch
    from trl import get_peft_config, get_quantization_config

    from ..quickstart.tiny_model import tiny_model_path
    from ..trainers.sft_trainer import SymNoiseSFTTrainer

    script_args, training_args, model_args, dataset_args, _ = command
    train_dataset, eval_dataset = load_train_eval(script_args, training_args, dataset_args)  # before the model loads
    if model_args.model_name_or_path is None:
        model_args.model_name_or_path = str(tiny_model_path())
        print(f"No --model_name_or_path: using the built-in tiny model at {model_args.model_name_or_path}")
        if "OMP_NUM_THREADS" not in os.environ and training_args.device.type == "cpu":
            # NOTE: a 1.8M-parameter model's ops are too small to share: on 2 busy cores a quickstart step took
            # 682 ms on torch's 2 threads against 119 ms on one (idle: 70 vs 91; benchmarks/quickstart_load.py).
            torch.set_num_threads(1)
            print("The tiny model trains on one CPU thread (set OMP_NUM_THREADS to choose)")
    model_init_kwargs = dict(
        revision=model_args.model_revision,
        trust_remote_code=training_args.trust_remote_code,
        attn_implementation=model_args.attn_implementation,
        dtype=model_args.dtype,
    )
    quantization_config = get_quantization_config(model_args)
    if quantization_config is not None and training_args.device.type == "cpu":
        model_init_kwargs["device_map"] = "cpu"  # bitsandbytes places 4-bit weights by device_map
    model_init_kwargs.update(training_args.model_init_kwargs or {})
    training_args.model_init_kwargs = model_init_kwargs

    return SymNoiseSFTTrainer(
        model=model_args.model_name_or_path,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        quantization_config=quantization_config,
        peft_config=get_peft_config(model_args),
    )


def train_and_save(trainer, command: CommandLine) -> None:
    """Train (resuming if asked), save the model or adapter with its tokenizer or processor, push if asked."""
    from transformers import ProcessorMixin, TrainerState
    from transformers.trainer import TRAINER_STATE_NAME

    from ..quickstart.tiny_model import tiny_model_path

    script_args, training_args, model_args, _, resume = command
    if resume is not None:
        state = TrainerState.load_from_json(str(Path(resume) / TRAINER_STATE_NAME))
        trainer.accelerator.print(f"Resuming from {resume} at step {state.global_step}")
    trainer.train(resume_from_checkpoint=resume)
    trainer.save_model(training_args.output_dir)
    hub_dataset = script_args.dataset_name if not Path(script_args.dataset_name or "").exists() else None
    trainer.create_model_card(model_name=Path(training_args.output_dir).name, dataset_name=hub_dataset)
    what = "LoRA adapter" if model_args.use_peft else "model"
    with_it = "processor" if isinstance(trainer.processing_class, ProcessorMixin) else "tokenizer"  # VLM or text
    trainer.accelerator.print(f"Saved the {what} and {with_it} to {training_args.output_dir}")
    if training_args.push_to_hub:
        trainer.push_to_hub(dataset_name=script_args.dataset_name)
    if model_args.model_name_or_path == str(tiny_model_path()) and trainer.accelerator.is_main_process:
        print(REAL_MODEL_HINT)
    if hasattr(trainer, "end"):  # Trainer.end (closes the trackers) is newer than transformers 5.17
        trainer.end()


def run(argv=None):
    """`symnoise-sft` on `argv` (default: the command line): parse, build, train, save; returns the trainer. A bad
    option, file or setting exits 2 with one line, before training."""
    # NOTE: TRL's SFTConfig sets `gradient_checkpointing` by default, which transformers >= 5.2x deprecates in favour
    # of `activation_checkpointing` (absent before): a FutureWarning on every run, about nothing the user wrote.
    warnings.filterwarnings("ignore", message=r"`gradient_checkpointing\w*` is deprecated", category=FutureWarning)
    import_bitsandbytes_quietly()
    parser = make_parser()
    try:
        command = parse_command_line(parser, argv)
        trainer = build_trainer(command)
    except ValueError as error:  # a config's __post_init__, bad data, a setting the trainer refuses: exit 2
        parser.error(str(error))
    train_and_save(trainer, command)
    return trainer


def main(argv=None) -> None:
    try:
        run(argv)
    except KeyboardInterrupt:  # a second Ctrl-C (the first saves a checkpoint: SaveOnSignalCallback)
        print("symnoise-sft: interrupted; nothing saved since the last checkpoint", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main(sys.argv[1:])
