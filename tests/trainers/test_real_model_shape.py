"""What a real small model brings, on a tiny model of the same shape: SmolLM2-135M-Instruct has tied input and output
embeddings, a tokenizer whose pad token is its eos token, and trains in bf16 on a CPU. SymNoise must still equal SFT at
alpha=0 and give the mean of the two halves' losses at alpha > 0."""

import copy

import pytest
import torch
from trl import SFTConfig, SFTTrainer

from symnoise_trl import SymNoiseSFTConfig
from symnoise_trl.quickstart.tiny_model import build_model

from helpers import tiny


def smollm_shaped(dtype=torch.bfloat16):
    tokenizer = copy.deepcopy(tiny.tokenizer())
    tokenizer.pad_token = tokenizer.eos_token  # as SmolLM2's: padding and end of answer are one token
    model = build_model(tokenizer, 0, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)  # fmt: skip
    assert model.get_input_embeddings().weight is model.get_output_embeddings().weight
    return model.to(dtype), tokenizer


def train(trainer_cls, config_cls, tmp_path, model, tokenizer, **overrides):
    args = tiny.train_args(config_cls, tmp_path / trainer_cls.__name__, bf16=True, **overrides)
    trainer = trainer_cls(model=model, args=args, train_dataset=tiny.prompt_completion_dataset(),
                          processing_class=tokenizer)  # fmt: skip
    trainer.train()
    return trainer


def test_alpha_zero_is_sft_with_tied_embeddings_pad_as_eos_in_bf16(tmp_path):
    plain = train(SFTTrainer, SFTConfig, tmp_path, *smollm_shaped())
    doubled = train(tiny.BatchRecordingTrainer, SymNoiseSFTConfig, tmp_path, *smollm_shaped(), symnoise_alpha=0.0)
    for p, d in zip(tiny.step_logs(plain), tiny.step_logs(doubled), strict=True):
        assert d["num_tokens"] == p["num_tokens"]
        assert d["loss"] == pytest.approx(p["loss"], rel=1e-2)  # bf16: the doubled batch sums in another order
    batch = doubled.batches[0]
    eos = smollm_shaped()[1].eos_token_id
    last = batch["attention_mask"].sum(1) - 1
    assert (batch["labels"][torch.arange(len(last)), last] == eos).all()  # the answer's eos is trained, not padding


def test_loss_is_the_mean_of_the_halves_with_tied_embeddings_in_bf16(tmp_path):
    model, tokenizer = smollm_shaped()
    reference = copy.deepcopy(model)
    recorder = tiny.EmbeddingRecorder(model)
    trainer = train(
        tiny.BatchRecordingTrainer, SymNoiseSFTConfig, tmp_path, model, tokenizer, symnoise_alpha=5.0, max_steps=1
    )
    batch, call = trainer.batches[0], [c for c in recorder.calls if c["training"]][0]
    b = batch["input_ids"].shape[0]
    assert call["received"].shape[0] == 2 * b and call["received"].dtype == torch.bfloat16
    mask = batch["attention_mask"]
    with torch.no_grad():
        losses = [reference(inputs_embeds=h, labels=batch["labels"], attention_mask=mask).loss.item()
                  for h in (call["received"][:b], call["received"][b:])]  # fmt: skip
    assert tiny.step_logs(trainer)[0]["loss"] == pytest.approx(sum(losses) / 2, rel=2e-2)
    assert losses[0] != losses[1]
