"""Quickstart: the model, a small Llama built from a config with a tokenizer trained in code, cached on first use.

Nothing is downloaded. The tokenizer is a byte-level BPE trained on the quickstart's training prompts and
completions; the weights are random (seeded). The folder is a normal `save_pretrained` checkpoint, so the CLI
loads it like any model: `--model_name_or_path $(python -c "from symnoise_trl.quickstart.tiny_model import
tiny_model_path; print(tiny_model_path())")`.
"""

import json
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from .cache import built_once, cache_dir
from .tasks import DATA_DIR

VERSION = "tiny-llama-v1"  # bump when the recipe below changes: the cache is keyed by it
VOCAB_SIZE = 1024
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}{{ 'Assistant:' }}"
    "{% generation %}{{ ' ' + message['content'] + eos_token }}{% endgeneration %}"
    "{% else %}{{ message['role'] | capitalize + ': ' + message['content'] + '\n' }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)


def build_tokenizer(texts: list[str], vocab_size: int = VOCAB_SIZE, chat_template: str = CHAT_TEMPLATE):
    """A byte-level BPE tokenizer trained on `texts`, with <pad> and <eos> and a chat template."""
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<pad>", "<eos>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    bpe.train_from_iterator(texts, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, pad_token="<pad>", eos_token="<eos>")
    tokenizer.chat_template = chat_template
    return tokenizer


def build_model(tokenizer: PreTrainedTokenizerFast, seed: int = 0, **config) -> LlamaForCausalLM:
    """A randomly initialised Llama for `tokenizer`; `config` overrides the quickstart's sizes."""
    sizes = dict(hidden_size=192, intermediate_size=512, num_hidden_layers=4, num_attention_heads=6,
                 num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True)  # fmt: skip
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        **{**sizes, **config},
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return LlamaForCausalLM(config)


def tiny_model_path() -> Path:
    """The folder of the cached tiny model and tokenizer, built on first use (a few seconds)."""

    def build(folder: Path) -> None:
        texts = []
        with open(DATA_DIR / "train.jsonl") as f:
            for line in f:
                row = json.loads(line)
                texts.append(row["prompt"] + row["completion"])
        tokenizer = build_tokenizer(texts)
        build_model(tokenizer).save_pretrained(folder)
        tokenizer.save_pretrained(folder)

    return built_once(cache_dir() / VERSION, build)
