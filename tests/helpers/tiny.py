"""Tiny models, tokenizers, data and recording helpers built in code for the trainer tests (nothing is downloaded)."""

import functools
import random

import pytest
import torch
from datasets import Dataset
from transformers import (
    AttentionInterface,
    DataCollatorForLanguageModeling,
    DataCollatorForSeq2Seq,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    TrainerCallback,
)
from transformers.masking_utils import AttentionMaskInterface

from symnoise_trl import SymNoiseSFTTrainer
from symnoise_trl.quickstart.tiny_model import build_model, build_tokenizer

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}{{ '<assistant> ' }}"
    "{% generation %}{{ message['content'] + eos_token }}{% endgeneration %}"
    "{% else %}{{ '<' + message['role'] + '> ' + message['content'] + '\n' }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<assistant> ' }}{% endif %}"
)
WORDS = "add sort reverse the numbers list of and to from a b c d e f g h one two three four five six seven".split()


@functools.lru_cache
def tokenizer() -> PreTrainedTokenizerFast:
    rng = random.Random(0)
    corpus = [" ".join(rng.choices(WORDS, k=12)) + f" {rng.randint(0, 999)}" for _ in range(300)]
    return build_tokenizer(corpus, vocab_size=320, chat_template=CHAT_TEMPLATE)


def model(seed: int = 0, attn_implementation: str = "sdpa") -> LlamaForCausalLM:
    sizes = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, tie_word_embeddings=False)  # fmt: skip
    built = build_model(tokenizer(), seed, **sizes)
    built.config._attn_implementation = attn_implementation
    return built


def prompt_completion_dataset(n: int = 32, seed: int = 0) -> Dataset:
    rng = random.Random(seed)
    prompts, completions = [], []
    for _ in range(n):
        numbers = [rng.randint(0, 99) for _ in range(rng.randint(2, 8))]
        prompts.append("sort the numbers " + " ".join(map(str, numbers)) + " :")
        completions.append(" " + " ".join(map(str, sorted(numbers))))
    return Dataset.from_dict({"prompt": prompts, "completion": completions})


def conversational_dataset(n: int = 16, seed: int = 0) -> Dataset:
    data = prompt_completion_dataset(n, seed)
    messages = [
        [{"role": "user", "content": p}, {"role": "assistant", "content": c.strip()}]
        for p, c in zip(data["prompt"], data["completion"], strict=True)
    ]
    return Dataset.from_dict({"messages": messages})


# A reference varlen attention: causal attention inside each [cu[i], cu[i+1]) segment, from `cu_seq_lens_q` (or, where
# the collator gives none, from where position_ids restart at 0).
# transformers' sdpa/eager attention rebuild the segments from position_ids and ignore cu_seq_lens; a FlashAttention
# varlen kernel uses cu_seq_lens alone. This one does too, so a wrong cu_seq_lens shows on CPU.
VARLEN_REFERENCE = "varlen_reference"


def varlen_reference_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    cu = kwargs.get("cu_seq_lens_q")
    if cu is None and "position_ids" in kwargs:  # older TRL collators give position_ids only (as FlashAttention does)
        starts = (kwargs["position_ids"][0] == 0).nonzero().flatten()
        cu = torch.cat([starts, torch.tensor([kwargs["position_ids"].shape[1]])])
    if cu is None:
        raise RuntimeError(f"the varlen reference attention needs cu_seq_lens_q or position_ids, got {sorted(kwargs)}")
    assert query.shape[0] == 1, "varlen batches are (1, T)"
    groups = query.shape[1] // key.shape[1]
    key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
    out = torch.zeros_like(query)
    bounds = cu.tolist()
    assert bounds[0] == 0 and bounds[-1] == query.shape[2], (
        f"cu_seq_lens {bounds} do not cover {query.shape[2]} tokens"
    )
    for start, end in zip(bounds[:-1], bounds[1:], strict=True):
        q, k, v = query[:, :, start:end], key[:, :, start:end], value[:, :, start:end]
        out[:, :, start:end] = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scaling)
    return out.transpose(1, 2).contiguous(), None


AttentionInterface.register(VARLEN_REFERENCE, varlen_reference_attention)
AttentionMaskInterface.register(VARLEN_REFERENCE, lambda *args, **kwargs: None)


def train_args(config_cls, output_dir, **overrides):
    """CPU-friendly SFT arguments shared by the trainer tests."""
    defaults = dict(
        output_dir=str(output_dir),
        per_device_train_batch_size=4,
        max_steps=3,
        learning_rate=1e-3,
        logging_steps=1,
        report_to="none",
        bf16=False,
        use_cpu=True,
        save_strategy="no",
        dataloader_pin_memory=False,
        seed=0,
        disable_tqdm=True,
    )
    return config_cls(**{**defaults, **overrides})


def first_decoder_layer(model) -> torch.nn.Module:
    """Layer 0 of the decoder the token embeddings feed: a causal LM's `model.layers`, or a vision-language model's
    language model's (`language_model` or `text_model`), through a PEFT wrapper too."""
    inner = ("model", "language_model", "text_model")
    while not hasattr(model, "layers"):
        model = next(getattr(model, name) for name in inner if hasattr(model, name))
    return model.layers[0]


class EmbeddingRecorder:
    """For every forward: the token ids, the raw embedding output, and what decoder layer 0 received (in a
    vision-language model, the embeddings after the image features replaced the placeholders).

    `ids` are the model's `input_ids` (Gemma 4 embeds a copy with its placeholders set to padding). Attach it before
    training: its embedding hook is registered before SymNoise's, so it sees the plain output.
    """

    def __init__(self, model):
        self.calls = []
        self._model_ids = None
        model.register_forward_pre_hook(self._model, with_kwargs=True)
        model.get_input_embeddings().register_forward_hook(self._embedding)
        first_decoder_layer(model).register_forward_pre_hook(self._decoder, with_kwargs=True)

    def _model(self, module, args, kwargs):
        self._model_ids = kwargs.get("input_ids", args[0] if args else None)

    def _embedding(self, module, args, output):
        ids = self._model_ids if self._model_ids is not None else args[0]
        self.calls.append({"ids": ids.detach().clone(), "raw": output.detach().clone(), "training": module.training})

    def _decoder(self, module, args, kwargs):
        hidden = args[0] if args else kwargs["hidden_states"]
        self.calls[-1]["received"] = hidden.detach().clone()  # a checkpointed recompute writes the same value


def record_seeds(trainer) -> list[tuple[int, int]]:
    """A list that fills, while `trainer` trains, with (global step, seed) of every SymNoise training micro-batch,
    read from the trainer's public `symnoise_seeds` after each micro-step."""
    seeds = []

    class SeedLog(TrainerCallback):
        def on_substep_end(self, args, state, control, **kwargs):
            draw = trainer.symnoise_seeds.last
            seeds.append((draw.global_step, draw.seed))

        on_step_end = on_substep_end

    trainer.add_callback(SeedLog())
    return seeds


def tensor_copy(batch: dict) -> dict:
    return {k: v.detach().clone() if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def tokenized(n=32, seed=0, prompt_labels=False):
    """input_ids of prompt + completion; with `prompt_labels`, also labels with the prompt masked (-100)."""
    tok = tokenizer()
    data = prompt_completion_dataset(n, seed)

    def encode(row):
        prompt = tok(row["prompt"])["input_ids"]
        ids = tok(row["prompt"] + row["completion"])["input_ids"] + [tok.eos_token_id]
        out = {"input_ids": ids}
        if prompt_labels:
            out["labels"] = [-100] * len(prompt) + ids[len(prompt) :]
        return out

    return data.map(encode, remove_columns=data.column_names)


COLLATORS = {
    "language_modeling": lambda: DataCollatorForLanguageModeling(tokenizer(), mlm=False),
    "padding_with_labels": lambda: DataCollatorForSeq2Seq(tokenizer(), padding=True),
}


class BatchRecordingTrainer(SymNoiseSFTTrainer):
    """Keeps a copy of every training batch the Trainer gives to training_step (before SymNoise doubles it)."""

    def training_step(self, model, inputs, num_items_in_batch=None):
        self.batches = getattr(self, "batches", []) + [tensor_copy(inputs)]
        return super().training_step(model, inputs, num_items_in_batch)


def step_logs(trainer):
    return [h for h in trainer.state.log_history if "loss" in h]


def assert_trained_alike(plain, doubled, param_atol: float = 1e-6):
    """`doubled` (SymNoise at alpha 0) logged what `plain` (the trainer without SymNoise) did at each of its 3 steps,
    and ended with the same parameters."""
    plain_logs, doubled_logs = step_logs(plain), step_logs(doubled)
    assert len(plain_logs) == len(doubled_logs) == 3
    for p, d in zip(plain_logs, doubled_logs, strict=True):
        assert d["num_tokens"] == p["num_tokens"]
        for key in ("loss", "grad_norm", "entropy", "mean_token_accuracy"):
            assert d[key] == pytest.approx(p[key], rel=1e-5, abs=1e-6), key
    for (name, p), (_, d) in zip(plain.model.named_parameters(), doubled.model.named_parameters(), strict=True):
        torch.testing.assert_close(d, p, rtol=1e-5, atol=param_atol, msg=name)
