"""symnoise_two_pass: two passes of the original batch give the parameters of one pass over the doubled batch."""

import pytest
import torch

from symnoise_trl import SymNoiseSFTConfig, SymNoiseSFTTrainer

from helpers import tiny

# Also run at the lowest versions pyproject.toml allows (scripts/test_floors.sh).
pytestmark = pytest.mark.floors

SETTINGS = {
    "padded": dict(),
    "grad_accum": dict(gradient_accumulation_steps=2, per_device_train_batch_size=2),
    "packing": dict(packing=True, max_length=64),
}


class WithoutItemCount(SymNoiseSFTTrainer):
    """A model that takes no loss kwargs: Trainer passes no `num_items_in_batch` and normalises per micro-batch."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.model_accepts_loss_kwargs = False
        self.seen_items = []

    def training_step(self, model, inputs, num_items_in_batch=None):
        self.seen_items.append(num_items_in_batch)
        return super().training_step(model, inputs, num_items_in_batch)


class PerMicroBatchMean(SymNoiseSFTTrainer):
    """A subclass whose compute_loss takes each micro-batch's own token mean and says so (loss_is_scaled_for_ga):
    Trainer then divides the loss by the accumulation steps, whatever count it passes."""

    loss_is_scaled_for_ga = False

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch=None)


def train(tmp_path, two_pass, model=None, trainer_cls=SymNoiseSFTTrainer, **overrides):
    attn = "varlen_reference" if overrides.get("packing") else "sdpa"
    args = tiny.train_args(SymNoiseSFTConfig, tmp_path / f"two_pass_{two_pass}", symnoise_alpha=5.0,
                           symnoise_two_pass=two_pass, **overrides)  # fmt: skip
    trainer = trainer_cls(
        model=model or tiny.model(attn_implementation=attn),
        args=args,
        train_dataset=tiny.prompt_completion_dataset(),
        processing_class=tiny.tokenizer(),
    )
    trainer.train()
    return trainer


@pytest.mark.parametrize("setting", list(SETTINGS))
def test_two_pass_matches_the_doubled_batch(tmp_path, setting):
    # SGD: parameters move linearly with the gradients. (Adam divides by sqrt(v), which turns float noise in
    # near-zero gradient entries into differences of up to lr.)
    sgd = dict(optim="sgd", learning_rate=0.05)
    one = train(tmp_path, False, **SETTINGS[setting], **sgd)
    two = train(tmp_path, True, **SETTINGS[setting], **sgd)
    logs = [[h for h in t.state.log_history if "loss" in h] for t in (one, two)]
    assert len(logs[0]) == len(logs[1]) == 3
    for a, b in zip(*logs, strict=True):
        assert b["num_tokens"] == a["num_tokens"]
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5)
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-4)
    for (name, a), (_, b) in zip(one.model.named_parameters(), two.model.named_parameters(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("setting", ["padded", "grad_accum"])
def test_two_pass_matches_without_an_item_count(tmp_path, setting):
    # Each pass is then its own token mean, halved; the one-pass run takes the token mean of the doubled batch.
    sgd = dict(optim="sgd", learning_rate=0.05)
    one = train(tmp_path, False, trainer_cls=WithoutItemCount, **SETTINGS[setting], **sgd)
    two = train(tmp_path, True, trainer_cls=WithoutItemCount, **SETTINGS[setting], **sgd)
    assert set(one.seen_items) == set(two.seen_items) == {None}
    for a, b in zip(*[[h for h in t.state.log_history if "loss" in h] for t in (one, two)], strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5)
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-4)
    for (name, a), (_, b) in zip(one.model.named_parameters(), two.model.named_parameters(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6, msg=name)
    assert two.current_gradient_accumulation_steps == one.current_gradient_accumulation_steps  # restored


def test_two_pass_matches_a_loss_not_scaled_by_the_count(tmp_path):
    sgd = dict(optim="sgd", learning_rate=0.05)
    one = train(tmp_path, False, trainer_cls=PerMicroBatchMean, **SETTINGS["grad_accum"], **sgd)
    two = train(tmp_path, True, trainer_cls=PerMicroBatchMean, **SETTINGS["grad_accum"], **sgd)
    for (name, a), (_, b) in zip(one.model.named_parameters(), two.model.named_parameters(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6, msg=name)


def test_two_pass_runs_the_halves_at_the_original_batch_size(tmp_path):
    model = tiny.model()
    recorder = tiny.EmbeddingRecorder(model)
    train(tmp_path, True, model=model, max_steps=1)
    plus, minus = [c for c in recorder.calls if c["training"]]
    assert plus["raw"].shape[0] == minus["raw"].shape[0] == 4  # not doubled
    assert torch.equal(plus["raw"], minus["raw"])
    torch.testing.assert_close((plus["received"] + minus["received"]) / 2, plus["raw"], rtol=0, atol=1e-6)
    assert not torch.equal(plus["received"], plus["raw"])


def test_two_pass_is_refused_with_deepspeed(tmp_path):
    class PretendDeepSpeed(SymNoiseSFTTrainer):
        def create_accelerator_and_postprocess(self):
            super().create_accelerator_and_postprocess()
            self.is_deepspeed_enabled = True

    with pytest.raises(ValueError, match="`symnoise_two_pass=True` runs two backward passes"):
        PretendDeepSpeed(
            model=tiny.model(),
            args=tiny.train_args(SymNoiseSFTConfig, tmp_path, symnoise_alpha=5.0, symnoise_two_pass=True),
            train_dataset=tiny.prompt_completion_dataset(),
            processing_class=tiny.tokenizer(),
        )
