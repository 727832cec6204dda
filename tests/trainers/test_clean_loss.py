"""`symnoise_clean_loss_steps`: the loss of the same batch without noise, logged beside the training loss. It equals
the plain model's loss computed by hand, and a run with it trains bit-identically to a run without it, in both
modes, with gradient accumulation, LoRA and the plain Trainer."""

import copy

import pytest
import torch
from peft import LoraConfig

from symnoise_trl import SymNoiseSFTConfig, SymNoiseTrainer, SymNoiseTrainingArguments

from helpers import tiny

# Also run at the lowest versions pyproject.toml allows (scripts/test_floors.sh).
pytestmark = pytest.mark.floors

ALPHA = 5.0
MODES = {
    "one_pass": dict(),
    "two_pass": dict(symnoise_two_pass=True),
    "grad_accum": dict(gradient_accumulation_steps=2),
    "one_sided": dict(symnoise_distribution="uniform"),
}


def sft(tmp_path, model=None, peft_config=None, **overrides):
    args = tiny.train_args(SymNoiseSFTConfig, tmp_path, **{"symnoise_alpha": ALPHA, **overrides})
    torch.manual_seed(0)  # TRL 1.14 (the floors) initialises LoRA weights before Trainer seeds the run
    trainer = tiny.BatchRecordingTrainer(model=model or tiny.model(), args=args,
                                         train_dataset=tiny.prompt_completion_dataset(),
                                         processing_class=tiny.tokenizer(), peft_config=peft_config)  # fmt: skip
    trainer.train()
    return trainer


def plain(tmp_path, **overrides):
    args = tiny.train_args(SymNoiseTrainingArguments, tmp_path, symnoise_alpha=ALPHA, **overrides)
    trainer = SymNoiseTrainer(model=tiny.model(), args=args, train_dataset=tiny.tokenized(prompt_labels=True),
                              data_collator=tiny.COLLATORS["padding_with_labels"]())  # fmt: skip
    trainer.train()
    return trainer


def assert_same_training(a, b):
    assert [h["loss"] for h in tiny.step_logs(a)] == [h["loss"] for h in tiny.step_logs(b)]
    assert [h["grad_norm"] for h in tiny.step_logs(a)] == [h["grad_norm"] for h in tiny.step_logs(b)]
    for (name, p), (_, q) in zip(a.model.named_parameters(), b.model.named_parameters(), strict=True):
        assert torch.equal(p, q), name


@pytest.mark.parametrize("mode", list(MODES))
def test_it_trains_bit_identically_and_logs_every_step(tmp_path, mode):
    off = sft(tmp_path / "off", **MODES[mode])
    on = sft(tmp_path / "on", symnoise_clean_loss_steps=1, **MODES[mode])
    assert_same_training(on, off)
    assert all("clean_loss" in h and "clean_loss_gap" in h for h in tiny.step_logs(on))
    assert not any("clean_loss" in h for h in tiny.step_logs(off))


def test_lora_and_the_plain_trainer_train_bit_identically(tmp_path):
    # LoRA dropout draws random numbers in every training-mode forward, the clean one too: it must not shift them.
    lora = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.2, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    assert_same_training(sft(tmp_path / "on", peft_config=lora, symnoise_clean_loss_steps=1),
                         sft(tmp_path / "off", peft_config=lora))  # fmt: skip
    on, off = plain(tmp_path / "plain_on", symnoise_clean_loss_steps=1), plain(tmp_path / "plain_off")
    assert_same_training(on, off)
    assert all("clean_loss" in h for h in tiny.step_logs(on))


@pytest.mark.parametrize("accumulation", [1, 2])
def test_clean_loss_is_the_plain_models_loss_on_the_batch(tmp_path, accumulation):
    model = tiny.model()
    reference = copy.deepcopy(model)  # the plain transformers model and loss, before any step
    trainer = sft(tmp_path, model, max_steps=1, symnoise_clean_loss_steps=1,
                  gradient_accumulation_steps=accumulation, per_device_train_batch_size=4 // accumulation)  # fmt: skip
    nll, tokens = 0.0, 0
    with torch.no_grad():
        for batch in trainer.batches:  # the micro-batches of step 0, as the Trainer gave them
            n = int((batch["labels"][:, 1:] != -100).sum())
            extra = {k: v for k, v in batch.items() if k != "labels"}
            nll += reference(**extra, labels=batch["labels"]).loss.item() * n
            tokens += n
    (log,) = tiny.step_logs(trainer)
    assert log["clean_loss"] == pytest.approx(nll / tokens, rel=1e-5)
    assert log["clean_loss_gap"] == pytest.approx(log["loss"] - log["clean_loss"], abs=1e-3)  # loss is rounded
    assert log["clean_loss_gap"] > 0  # at alpha 5 the noisy copies fit worse


def test_alpha_zero_has_no_gap(tmp_path):
    trainer = sft(tmp_path, symnoise_alpha=0.0, symnoise_clean_loss_steps=1)
    for log in tiny.step_logs(trainer):
        assert log["clean_loss_gap"] == pytest.approx(0.0, abs=1e-5)


def test_every_n_steps_from_the_first(tmp_path):
    trainer = sft(tmp_path, max_steps=5, symnoise_clean_loss_steps=2)
    assert ["clean_loss" in h for h in tiny.step_logs(trainer)] == [True, False, True, False, True]


@pytest.mark.parametrize("value", [-1, True, 1.5, "2"])
def test_bad_values_raise_naming_the_field(value):
    with pytest.raises(ValueError, match=r"`symnoise_clean_loss_steps` must be an int >= 0"):
        SymNoiseSFTConfig(output_dir="out", bf16=False, symnoise_alpha=ALPHA, symnoise_clean_loss_steps=value)
    with pytest.raises(ValueError, match=r"`symnoise_clean_loss_steps` set while `symnoise_alpha` is None"):
        SymNoiseSFTConfig(output_dir="out", bf16=False, symnoise_clean_loss_steps=3)
