"""SymNoise for transformers' own Trainer (SymNoiseTrainer) and any Trainer subclass (SymNoiseMixin), on a causal LM
with the standard collators: alpha=0 is Trainer, the loss is the mean of the two halves computed by hand, evaluation
and prediction see the plain model, the hook goes away, and the model card names SymNoise."""

import copy
import dataclasses
import warnings

import pytest
import torch
from transformers import (
    Trainer,
    TrainingArguments,
)

from symnoise_trl import (
    SymNoiseArguments,
    SymNoiseMixin,
    SymNoiseTrainer,
    SymNoiseTrainingArguments,
    active_symnoise_hook,
    add_symnoise,
)

from helpers import tiny

# Also run at the lowest versions pyproject.toml allows (scripts/test_floors.sh).
pytestmark = pytest.mark.floors

ALPHA = 5.0
D = 64


class Recording(SymNoiseTrainer):
    def training_step(self, model, inputs, num_items_in_batch=None):
        self.batches = getattr(self, "batches", []) + [tiny.tensor_copy(inputs)]
        return super().training_step(model, inputs, num_items_in_batch)


def run(trainer_cls, args_cls, tmp_path, collator="padding_with_labels", model=None, **overrides):
    defaults = dict(output_dir=str(tmp_path / trainer_cls.__name__), per_device_train_batch_size=4, max_steps=3,
                    learning_rate=1e-3, logging_steps=1, report_to="none", use_cpu=True, save_strategy="no",
                    dataloader_pin_memory=False, seed=0, disable_tqdm=True)  # fmt: skip
    trainer = trainer_cls(
        model=model or tiny.model(),
        args=args_cls(**{**defaults, **overrides}),
        train_dataset=tiny.tokenized(prompt_labels=collator == "padding_with_labels"),
        data_collator=tiny.COLLATORS[collator](),
    )
    trainer.train()
    return trainer


def logs(trainer):
    return [h for h in trainer.state.log_history if "loss" in h]


@pytest.mark.parametrize("collator", list(tiny.COLLATORS))
@pytest.mark.parametrize("accumulation", [1, 2])
def test_alpha_zero_reproduces_trainer(tmp_path, collator, accumulation):
    # SGD: parameters move linearly with the gradients (Adam turns float noise in near-zero gradient entries, from the
    # doubled batch's other summation order, into differences of up to lr).
    options = dict(gradient_accumulation_steps=accumulation, optim="sgd", learning_rate=0.05)
    plain = run(Trainer, TrainingArguments, tmp_path, collator, **options)
    doubled = run(SymNoiseTrainer, SymNoiseTrainingArguments, tmp_path, collator, symnoise_alpha=0.0, **options)
    assert len(logs(plain)) == len(logs(doubled)) == 3
    for p, d in zip(logs(plain), logs(doubled), strict=True):
        assert d["loss"] == pytest.approx(p["loss"], rel=1e-5)
        assert d["grad_norm"] == pytest.approx(p["grad_norm"], rel=1e-5)
    for (name, p), (_, d) in zip(plain.model.named_parameters(), doubled.model.named_parameters(), strict=True):
        torch.testing.assert_close(d, p, rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize("collator", list(tiny.COLLATORS))
def test_loss_is_the_mean_of_the_two_halves(tmp_path, collator):
    model = tiny.model()
    reference = copy.deepcopy(model)
    recorder = tiny.EmbeddingRecorder(model)
    trainer = run(Recording, SymNoiseTrainingArguments, tmp_path, collator, model=model, symnoise_alpha=ALPHA,
                  max_steps=1)  # fmt: skip
    batch = trainer.batches[0]
    b = batch["input_ids"].shape[0]
    received = [c for c in recorder.calls if c["training"]][0]["received"]
    assert received.shape == (2 * b, batch["input_ids"].shape[1], D)
    with torch.no_grad():
        losses = [
            reference(inputs_embeds=half, attention_mask=batch["attention_mask"], labels=batch["labels"]).loss.item()
            for half in (received[:b], received[b:])
        ]
    assert logs(trainer)[0]["loss"] == pytest.approx(sum(losses) / 2, rel=1e-5)
    assert losses[0] != pytest.approx(losses[1], rel=1e-6)
    plus, minus, clean = received[:b], received[b:], [c for c in recorder.calls if c["training"]][0]["raw"][:b]
    torch.testing.assert_close((plus + minus) / 2, clean, rtol=0, atol=1e-6)


def test_eval_and_predict_see_the_plain_model_and_the_hook_goes(tmp_path):
    model = tiny.model()
    recorder = tiny.EmbeddingRecorder(model)
    args = SymNoiseTrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=4, max_steps=2,
                                     per_device_eval_batch_size=4, eval_strategy="steps", eval_steps=1,
                                     report_to="none", use_cpu=True, save_strategy="no", symnoise_alpha=ALPHA,
                                     disable_tqdm=True)  # fmt: skip
    trainer = SymNoiseTrainer(model=model, args=args, train_dataset=tiny.tokenized(prompt_labels=True),
                              eval_dataset=tiny.tokenized(8, seed=1, prompt_labels=True),
                              data_collator=tiny.COLLATORS["padding_with_labels"]())  # fmt: skip
    trainer.train()
    trainer.predict(trainer.eval_dataset)
    evals = [c for c in recorder.calls if not c["training"]]
    trains = [c for c in recorder.calls if c["training"]]
    assert len(trains) == 2 and len(evals) == 2 * 2 + 2
    for call in evals:
        assert call["raw"].shape[0] == 4 and torch.equal(call["received"], call["raw"])
    for call in trains:
        assert call["raw"].shape[0] == 8 and not torch.equal(call["received"], call["raw"])
    assert active_symnoise_hook(model) is None


def test_training_arguments_without_symnoise_fields_warn(tmp_path):
    with pytest.warns(UserWarning, match="SymNoiseTrainer got a TrainingArguments, which has no `symnoise_alpha`"):
        trainer = SymNoiseTrainer(model=tiny.model(), args=TrainingArguments(output_dir=str(tmp_path), use_cpu=True),
                                  train_dataset=tiny.tokenized())  # fmt: skip
    assert isinstance(trainer.args, SymNoiseTrainingArguments) and trainer.args.symnoise_alpha is None


def test_any_trainer_subclass_gets_symnoise_by_mixing_it_in(tmp_path):
    class CustomTrainer(Trainer):  # a user's (or another library's) Trainer subclass
        def compute_loss(self, model, inputs, **kwargs):
            self.seen_batch_sizes = getattr(self, "seen_batch_sizes", []) + [inputs["input_ids"].shape[0]]
            return super().compute_loss(model, inputs, **kwargs)

    @dataclasses.dataclass
    class CustomArguments(SymNoiseArguments, TrainingArguments):
        pass

    class CustomSymNoiseTrainer(SymNoiseMixin, CustomTrainer):
        pass

    trainer = run(CustomSymNoiseTrainer, CustomArguments, tmp_path, symnoise_alpha=ALPHA, max_steps=2)
    assert trainer.seen_batch_sizes == [8, 8]  # its compute_loss sees the doubled batch
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # arguments with the fields mixed in are taken as they are, without a warning
        args = CustomArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none", symnoise_alpha=ALPHA)
        assert SymNoiseTrainer(model=tiny.model(), args=args, train_dataset=tiny.tokenized()).args is args
    with pytest.warns(UserWarning, match="mixes in SymNoiseMixin, but its arguments \\(TrainingArguments\\) have no"):
        CustomSymNoiseTrainer(model=tiny.model(), args=TrainingArguments(output_dir=str(tmp_path), use_cpu=True),
                              train_dataset=tiny.tokenized())  # fmt: skip


def test_model_card_names_symnoise_and_cites_the_paper(tmp_path):
    trainer = run(SymNoiseTrainer, SymNoiseTrainingArguments, tmp_path, symnoise_alpha=ALPHA, max_steps=1)
    trainer.create_model_card(model_name="tiny-symnoise")
    card = (tmp_path / "SymNoiseTrainer" / "README.md").read_text()
    assert "- symnoise" in card
    assert "arxiv.org/abs/2312.01523" in card and "@article{yadav2023symnoise" in card


def test_add_symnoise_mixes_into_a_trainer_built_elsewhere(tmp_path):
    # A framework builds the trainer (class chosen at run time); SymNoise is mixed in afterwards.
    class FrameworkTrainer(Trainer):
        def compute_loss(self, model, inputs, **kwargs):
            self.seen_batch_sizes = getattr(self, "seen_batch_sizes", []) + [inputs["input_ids"].shape[0]]
            return super().compute_loss(model, inputs, **kwargs)

    def build(trainer_cls):
        args = SymNoiseTrainingArguments(output_dir=str(tmp_path / trainer_cls.__name__), max_steps=2,
                                         per_device_train_batch_size=4, learning_rate=1e-3, logging_steps=1,
                                         report_to="none", use_cpu=True, save_strategy="no", seed=0,
                                         symnoise_alpha=ALPHA)  # fmt: skip
        return trainer_cls(model=tiny.model(), args=args, train_dataset=tiny.tokenized(prompt_labels=True),
                           data_collator=tiny.COLLATORS["padding_with_labels"]())  # fmt: skip

    mixed = add_symnoise(build(FrameworkTrainer))
    assert isinstance(mixed, SymNoiseMixin) and isinstance(mixed, FrameworkTrainer)
    assert type(mixed).__name__ == "SymNoiseFrameworkTrainer" and add_symnoise(mixed) is mixed
    assert type(add_symnoise(build(FrameworkTrainer))) is type(mixed)  # one mixed class per trainer class
    mixed.train()
    assert mixed.seen_batch_sizes == [8, 8]  # the doubled batch reaches the framework's own compute_loss
    reference = build(SymNoiseTrainer)
    reference.train()
    assert [h["loss"] for h in logs(mixed)] == pytest.approx([h["loss"] for h in logs(reference)], rel=1e-6)
    with pytest.warns(UserWarning, match="mixes in SymNoiseMixin, but its arguments \\(TrainingArguments\\) have no"):
        add_symnoise(Trainer(model=tiny.model(), args=TrainingArguments(output_dir=str(tmp_path), use_cpu=True)))
    patched = build(FrameworkTrainer)
    patched.training_step = lambda *args, **kwargs: None  # another plugin's patch on the instance
    with pytest.raises(ValueError, match="training_step is set on the instance and would hide SymNoiseMixin's"):
        add_symnoise(patched)
