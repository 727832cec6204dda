"""The model card of a SymNoise run names the base model (a local folder by its name, a local copy of a Hub model by
the Hub id its own card declares), records the SymNoise settings, cites the paper, and its usage snippet runs."""

import re

import pytest
from huggingface_hub import ModelCard, ModelCardData
from transformers import AutoModelForCausalLM

from symnoise_trl import SymNoiseSFTConfig, SymNoiseSFTTrainer, SymNoiseTrainer, SymNoiseTrainingArguments

from helpers import tiny

# Also run at the lowest versions pyproject.toml allows (scripts/test_floors.sh).
pytestmark = pytest.mark.floors

SETTINGS_ROWS = ["| `symnoise_alpha` | 5.0 |", "| `symnoise_length` | padded |", "| `symnoise_seed` | 7 |",
                 "| `symnoise_distribution` | symmetric |", "| `symnoise_two_pass` | True |"]  # fmt: skip


def base_folder(tmp_path, declared_hub_id=None):
    folder = tmp_path / "my-base-model"
    tiny.model().save_pretrained(folder)
    tiny.tokenizer().save_pretrained(folder)
    if declared_hub_id:  # as the offline copy of SmolLM2 declares the model it was converted from
        ModelCard(f"---\n{ModelCardData(base_model=declared_hub_id).to_yaml()}\n---\n").save(folder / "README.md")
    return folder


def card_of(kind, tmp_path, base):
    settings = dict(symnoise_alpha=5.0, symnoise_length="padded", symnoise_seed=7, symnoise_two_pass=True,
                    max_steps=1)  # fmt: skip
    if kind == "sft":
        args = tiny.train_args(SymNoiseSFTConfig, tmp_path / "out", **settings)
        trainer = SymNoiseSFTTrainer(model=str(base), args=args, train_dataset=tiny.prompt_completion_dataset(),
                                     processing_class=tiny.tokenizer())  # fmt: skip
    else:
        args = tiny.train_args(SymNoiseTrainingArguments, tmp_path / "out", **settings)
        trainer = SymNoiseTrainer(model=AutoModelForCausalLM.from_pretrained(base), args=args,
                                  train_dataset=tiny.tokenized(prompt_labels=True),
                                  data_collator=tiny.COLLATORS["padding_with_labels"]())  # fmt: skip
    trainer.train()
    trainer.save_model(args.output_dir)
    tiny.tokenizer().save_pretrained(args.output_dir)
    trainer.create_model_card()
    return (tmp_path / "out" / "README.md").read_text()


@pytest.mark.parametrize("kind", ["sft", "plain"])
def test_the_card_records_the_settings_and_names_a_local_base_model(tmp_path, kind):
    card = card_of(kind, tmp_path, base_folder(tmp_path))
    section = card[card.index("## SymNoise") :]
    assert "from the base model `my-base-model`" in section
    assert all(row in section for row in SETTINGS_ROWS), section
    assert card.count("@article{yadav2023symnoise") == 1 and "- symnoise" in card
    assert "[None]" not in card and 'model="None"' not in card
    if kind == "sft":
        assert "This model is a fine-tuned version of `my-base-model` (a local model folder)." in card


def test_a_local_copy_of_a_hub_model_is_named_by_its_hub_id(tmp_path):
    card = card_of("sft", tmp_path, base_folder(tmp_path, declared_hub_id="HuggingFaceTB/SmolLM2-135M-Instruct"))
    assert "fine-tuned version of [HuggingFaceTB/SmolLM2-135M-Instruct](https://huggingface.co/HuggingFaceTB/" in card
    assert "base_model: HuggingFaceTB/SmolLM2-135M-Instruct" in card
    assert "from the base model `HuggingFaceTB/SmolLM2-135M-Instruct`" in card


def test_the_usage_snippet_runs(tmp_path):
    card = card_of("sft", tmp_path, base_folder(tmp_path))
    snippet = re.search(r"```python\n(.*?)```", card, re.S).group(1)
    assert f'model="{tmp_path / "out"}"' in snippet
    snippet = snippet.replace("max_new_tokens=128", "max_new_tokens=4")
    exec(compile(snippet, "model card", "exec"), {})  # prints the generated text
