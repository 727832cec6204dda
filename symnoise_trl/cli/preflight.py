"""CLI: checks of a `symnoise-sft` run before anything loads: the output folder, the step and size numbers, the model.

Each mistake here would otherwise surface late (after the model loads) or deep inside transformers, TRL or the Hub
client, in a traceback that names neither the argument nor the fix. Each check raises a ValueError of one line that
names the option and says what to do; the CLI prints it and exits 2. Nothing is created or written on the way.
"""

from pathlib import Path

from ..hf.checkpoint_files import safetensors_problem

# Options that count something and must be at least 1.
POSITIVE_INTS = ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps")
# Step options that must be > 0 where their strategy is "steps" (an int, or a fraction of the run).
STEP_OPTIONS = {"logging_steps": "logging_strategy", "save_steps": "save_strategy", "eval_steps": "eval_strategy"}
# Options that must be >= 0.
NON_NEGATIVE_NUMBERS = ("learning_rate", "warmup_steps")


def check_output_dir(output_dir: str) -> None:
    path = Path(output_dir).expanduser()
    if path.exists() and not path.is_dir():
        raise ValueError(f"--output_dir {output_dir} is a file, not a folder; give a folder to save the model in")


def check_numbers(training_args) -> None:
    """The counts, steps and lengths of a run: positive where they count something."""
    for name in POSITIVE_INTS:
        value = getattr(training_args, name)
        if value < 1:
            raise ValueError(f"--{name} must be a positive integer, got {value}")
    for name, strategy in STEP_OPTIONS.items():
        value = getattr(training_args, name, None)
        if str(getattr(training_args, strategy, "")).endswith("steps") and value is not None and value <= 0:
            raise ValueError(
                f"--{name} must be > 0 (a number of steps, or a fraction of the run below 1), got {value}"
            )
    for name in NON_NEGATIVE_NUMBERS:
        value = getattr(training_args, name)
        if value < 0:
            raise ValueError(f"--{name} must be >= 0, got {value}")
    max_steps, epochs = training_args.max_steps, training_args.num_train_epochs
    if max_steps == 0 or max_steps < -1:
        raise ValueError(
            f"--max_steps must be a positive number of steps, or -1 to train --num_train_epochs, got {max_steps}"
        )
    if max_steps == -1 and epochs <= 0:
        raise ValueError(f"--num_train_epochs must be > 0 (or give --max_steps), got {epochs}")
    max_length = getattr(training_args, "max_length", None)
    if max_length is not None and max_length < 1:
        raise ValueError(
            f"--max_length must be a positive number of tokens, or None for no truncation, got {max_length}"
        )


def check_model(name: str, offline: bool) -> None:
    """A model folder must hold a saved model, with whole safetensors weights (a truncated or corrupt file is named); a
    name that is not a folder must be a Hub model (in the local Hub cache when `offline`)."""
    path = Path(name).expanduser()
    if path.is_file():
        raise ValueError(f"--model_name_or_path {name} is a file; give a model folder or a Hub model name")
    if path.is_dir():
        if not (path / "config.json").is_file() and not (path / "adapter_config.json").is_file():
            raise ValueError(
                f"--model_name_or_path {name}: the folder has no config.json; give a folder written by "
                "save_pretrained, or a Hub model name"
            )
        for weights in sorted(path.glob("*.safetensors")):
            problem = safetensors_problem(weights)
            if problem:
                raise ValueError(
                    f"--model_name_or_path {name}: {weights.name} {problem}; save or download the model again"
                )
        return
    # A path, not a Hub name ("org/name"): explicit, deeper, or under a local folder that exists (models/typo).
    if (
        name.startswith((".", "/", "~"))
        or name.count("/") > 1
        or "\\" in name
        or path.parent.name
        and path.parent.is_dir()
    ):
        raise ValueError(f"--model_name_or_path {name}: no such folder")
    if offline and not _in_hub_cache(name):
        raise ValueError(
            f"--model_name_or_path {name}: no such folder, and not in the local Hub cache while the Hub is offline "
            "(HF_HUB_OFFLINE); give a model folder"
        )


def _in_hub_cache(name: str) -> bool:
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError

    try:
        return isinstance(try_to_load_from_cache(name, "config.json"), str)
    except HFValidationError:  # not a valid repository name either
        return False
