"""`symnoise-sft`: TRL's `trl sft` script with SymNoise, plus an offline default model and data set.

    symnoise-sft --config examples/quickstart.yaml
    symnoise-sft --model_name_or_path Qwen/Qwen2.5-0.5B --dataset_name trl-lib/Capybara --symnoise_alpha 5 ...

Every `trl sft` option works (parsed by `TrlParser` over TRL's `ScriptArguments`, `ModelConfig` and
`DatasetMixtureConfig`, with `SymNoiseSFTConfig` in place of `SFTConfig`). Without `--model_name_or_path` it
trains the cached tiny model of `symnoise_trl.quickstart.tiny_model`; without a data set, the shipped quickstart tasks.
"""

import sys

from .quickstart.tasks import DATA_DIR

REAL_MODEL_HINT = """\
To run the same on a real model (one GPU; see README "Real models" for full fine-tuning and QLoRA):
  symnoise-sft --model_name_or_path Qwen/Qwen2.5-0.5B --dataset_name trl-lib/Capybara \\
      --symnoise_alpha 5 --per_device_train_batch_size 4 --gradient_accumulation_steps 8 \\
      --use_peft --lora_r 16 --output_dir Qwen2.5-0.5B-SymNoise"""


def make_parser():
    from trl import DatasetMixtureConfig, ModelConfig, ScriptArguments, TrlParser

    from .config import SymNoiseSFTConfig

    return TrlParser((ScriptArguments, SymNoiseSFTConfig, ModelConfig, DatasetMixtureConfig), prog="symnoise-sft")


def load_train_eval(script_args, training_args, dataset_args):
    from datasets import load_dataset
    from trl import get_dataset

    if dataset_args.datasets:
        dataset = get_dataset(dataset_args)
    else:
        name = script_args.dataset_name or str(DATA_DIR)
        dataset = load_dataset(name, name=script_args.dataset_config, streaming=script_args.dataset_streaming)
    train = dataset[script_args.dataset_train_split]
    evaluate = dataset[script_args.dataset_test_split] if training_args.eval_strategy != "no" else None
    return train, evaluate


def run(argv=None):
    """Parse `argv` (default: the command line), train, save; returns the trainer."""
    parser = make_parser()
    try:
        script_args, training_args, model_args, dataset_args = parser.parse_args_and_config(args=argv)
    except ValueError as error:  # a config's __post_init__: report it like an argparse error (exit 2)
        parser.error(str(error))

    from trl import get_peft_config, get_quantization_config

    from .quickstart.tiny_model import tiny_model_path
    from .trainer import SymNoiseSFTTrainer

    if dataset_args.datasets and script_args.dataset_name:
        parser.error("give either --dataset_name or `datasets` (a dataset mixture), not both")
    if model_args.model_name_or_path is None:
        model_args.model_name_or_path = str(tiny_model_path())
        print(f"No --model_name_or_path: using the built-in tiny model at {model_args.model_name_or_path}")

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

    train_dataset, eval_dataset = load_train_eval(script_args, training_args, dataset_args)
    trainer = SymNoiseSFTTrainer(
        model=model_args.model_name_or_path,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        quantization_config=quantization_config,
        peft_config=get_peft_config(model_args),
    )
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.save_model(training_args.output_dir)
    what = "LoRA adapter" if model_args.use_peft else "model"
    trainer.accelerator.print(f"Saved the {what} and tokenizer to {training_args.output_dir}")
    if training_args.push_to_hub:
        trainer.push_to_hub(dataset_name=script_args.dataset_name)
    if model_args.model_name_or_path == str(tiny_model_path()) and trainer.accelerator.is_main_process:
        print(REAL_MODEL_HINT)
    trainer.end()
    return trainer


def main(argv=None) -> None:
    run(argv)


if __name__ == "__main__":
    main(sys.argv[1:])
