"""SymNoiseSFTTrainer on a tiny Llama: equivalence with SFTTrainer at alpha=0, the loss of the two halves, the
embeddings the decoder receives, and what must stay noise-free."""

import copy
import math

import pytest
import torch
from transformers import TrainingArguments
from trl import SFTConfig, SFTTrainer

from symnoise_trl import (
    SymNoiseHook,
    SymNoiseSFTConfig,
    SymNoiseSFTTrainer,
    activate_symnoise,
    active_symnoise_hook,
    deactivate_symnoise,
)

from helpers import tiny

# Also run at the lowest versions pyproject.toml allows (scripts/test_floors.sh).
pytestmark = pytest.mark.floors

ALPHA = 5.0
D = 64  # hidden size of the tiny model

LAYOUTS = {
    "padded": dict(),
    "grad_accum": dict(gradient_accumulation_steps=2),
    "padding_free": dict(padding_free=True, max_length=None),
    "packing": dict(packing=True, max_length=64),
    "assistant_only": dict(assistant_only_loss=True),  # conversational data, loss on {% generation %} spans
}
VARLEN = ("padding_free", "packing")


def run(trainer_cls, config_cls, tmp_path, layout="padded", model=None, **overrides):
    attn = "varlen_reference" if layout in VARLEN else "sdpa"
    args = tiny.train_args(config_cls, tmp_path / trainer_cls.__name__, **{**LAYOUTS[layout], **overrides})
    data = tiny.conversational_dataset(32) if layout == "assistant_only" else tiny.prompt_completion_dataset()
    trainer = trainer_cls(
        model=model or tiny.model(attn_implementation=attn),
        args=args,
        train_dataset=data,
        processing_class=tiny.tokenizer(),
    )
    trainer.train()
    return trainer


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_alpha_zero_reproduces_sft(tmp_path, layout):
    plain = run(SFTTrainer, SFTConfig, tmp_path, layout)
    doubled = run(SymNoiseSFTTrainer, SymNoiseSFTConfig, tmp_path, layout, symnoise_alpha=0.0)
    tiny.assert_trained_alike(plain, doubled)


def test_alpha_none_is_sft_and_attaches_nothing(tmp_path):
    seen = []

    class Spy(SymNoiseSFTTrainer):
        def training_step(self, *args, **kwargs):
            seen.append(active_symnoise_hook(self.model))
            return super().training_step(*args, **kwargs)

    plain = run(SFTTrainer, SFTConfig, tmp_path)
    off = run(Spy, SymNoiseSFTConfig, tmp_path)
    assert seen == [None] * 3
    assert [h["loss"] for h in tiny.step_logs(off)] == [h["loss"] for h in tiny.step_logs(plain)]


@pytest.mark.parametrize("layout", ["padded", "packing"])
def test_loss_is_the_mean_of_the_two_halves(tmp_path, layout):
    attn = "varlen_reference" if layout in VARLEN else "sdpa"
    model = tiny.model(attn_implementation=attn)
    reference = copy.deepcopy(model)  # before the trainer patches the forward: the plain HF model and loss
    recorder = tiny.EmbeddingRecorder(model)
    trainer = run(tiny.BatchRecordingTrainer, SymNoiseSFTConfig, tmp_path, layout, model=model, symnoise_alpha=ALPHA,
                  max_steps=1)  # fmt: skip
    batch = trainer.batches[0]
    received = [c for c in recorder.calls if c["training"]][0]["received"]
    extra = {k: v for k, v in batch.items() if k not in ("input_ids", "labels")}
    with torch.no_grad():
        if layout == "padded":
            b = batch["input_ids"].shape[0]
            assert received.shape == (2 * b, batch["input_ids"].shape[1], D)
            halves = received[:b], received[b:]
        else:
            t = batch["input_ids"].shape[1]
            assert received.shape == (1, 2 * t, D)
            halves = received[:, :t], received[:, t:]
        losses = [reference(inputs_embeds=h, labels=batch["labels"], **extra).loss for h in halves]
    # Each copy has the same number of label tokens, so the doubled batch's token mean is the mean of the two means.
    assert tiny.step_logs(trainer)[0]["loss"] == pytest.approx((losses[0].item() + losses[1].item()) / 2, rel=1e-5)
    assert losses[0].item() != pytest.approx(losses[1].item(), rel=1e-6)  # the halves really differ


@pytest.mark.parametrize("length", ["sequence", "padded"])
def test_decoder_receives_symmetric_noise_of_the_right_size(tmp_path, length):
    model = tiny.model()
    recorder = tiny.EmbeddingRecorder(model)
    trainer = run(tiny.BatchRecordingTrainer, SymNoiseSFTConfig, tmp_path, model=model, symnoise_alpha=ALPHA,
                  symnoise_length=length, max_steps=2)  # fmt: skip
    training_calls = [c for c in recorder.calls if c["training"]]
    assert len(training_calls) == 2
    for call, batch in zip(training_calls, trainer.batches, strict=True):
        mask = batch["attention_mask"].bool()
        b, padded_length = mask.shape
        assert torch.equal(call["ids"], torch.cat([batch["input_ids"]] * 2))
        clean = call["raw"][:b]
        plus, minus = call["received"][:b], call["received"][b:]
        torch.testing.assert_close((plus + minus) / 2, clean, rtol=0, atol=1e-6)
        if length == "sequence":
            real_length = mask.sum(1, keepdim=True).float().expand_as(mask)
            expected = torch.where(mask, ALPHA / torch.sqrt(3 * real_length * D), 0.0)
            assert torch.equal(plus[~mask], clean[~mask]) and torch.equal(minus[~mask], clean[~mask])
            assert (~mask).any(), "the batch should contain padding"
        else:
            expected = torch.full(mask.shape, ALPHA / math.sqrt(3 * padded_length * D))
        torch.testing.assert_close((plus - clean).abs(), expected[..., None].expand_as(clean), rtol=1e-4, atol=1e-7)
    # Consecutive steps draw different signs.
    signs = [torch.sign(c["received"][:1] - c["raw"][:1]) for c in training_calls]
    assert not torch.equal(signs[0], signs[1])


def test_packed_noise_uses_each_sequence_length(tmp_path):
    model = tiny.model(attn_implementation="varlen_reference")
    recorder = tiny.EmbeddingRecorder(model)
    trainer = run(tiny.BatchRecordingTrainer, SymNoiseSFTConfig, tmp_path, "packing", model=model,
                  symnoise_alpha=ALPHA, max_steps=1)  # fmt: skip
    batch, call = trainer.batches[0], [c for c in recorder.calls if c["training"]][0]
    t = batch["input_ids"].shape[1]
    if "cu_seq_lens_q" in batch:
        cu = batch["cu_seq_lens_q"].long()
    else:  # older TRL collators: sequences start where position_ids restart at 0
        cu = torch.cat([(batch["position_ids"][0] == 0).nonzero().flatten(), torch.tensor([t])])
    assert len(cu) > 2, "several sequences should be packed"
    lengths = torch.repeat_interleave(cu.diff(), cu.diff()).float()
    clean, plus, minus = call["raw"][0, :t], call["received"][0, :t], call["received"][0, t:]
    torch.testing.assert_close((plus + minus) / 2, clean, rtol=0, atol=1e-6)
    expected = (ALPHA / torch.sqrt(3 * lengths * D))[:, None].expand_as(clean)
    torch.testing.assert_close((plus - clean).abs(), expected, rtol=1e-4, atol=1e-7)


def test_eval_predict_and_generate_see_the_plain_model(tmp_path):
    model = tiny.model()
    recorder = tiny.EmbeddingRecorder(model)
    data = tiny.prompt_completion_dataset()
    trainer = SymNoiseSFTTrainer(
        model=model,
        args=tiny.train_args(SymNoiseSFTConfig, tmp_path, symnoise_alpha=ALPHA, eval_strategy="steps", eval_steps=1,
                             per_device_eval_batch_size=4),
        train_dataset=data,
        eval_dataset=tiny.prompt_completion_dataset(8, seed=1),
        processing_class=tiny.tokenizer(),
    )  # fmt: skip
    trainer.train()
    trainer.predict(trainer.eval_dataset)
    prompt = tiny.tokenizer()(["sort the numbers 3 1 2 :"], return_tensors="pt")
    trainer.model.generate(**prompt, max_new_tokens=4, do_sample=False)

    evals = [c for c in recorder.calls if not c["training"]]
    trains = [c for c in recorder.calls if c["training"]]
    assert len(trains) == 3 and len(evals) >= 3 * 2 + 2 + 4  # eval each step, predict, generate
    for call in evals:
        assert torch.equal(call["received"], call["raw"])  # no noise
        assert call["raw"].shape[0] in (1, 4)  # no doubling
    for call in trains:
        assert call["raw"].shape[0] == 8 and not torch.equal(call["received"], call["raw"])
    assert active_symnoise_hook(trainer.model) is None


def test_hook_is_removed_when_training_raises(tmp_path):
    model = tiny.model()

    class Boom(SymNoiseSFTTrainer):
        def training_step(self, *args, **kwargs):
            assert isinstance(active_symnoise_hook(self.model), SymNoiseHook)  # attached in train()
            if self.state.global_step == 1:
                raise RuntimeError("boom")
            return super().training_step(*args, **kwargs)

    with pytest.raises(RuntimeError, match="boom"):
        run(Boom, SymNoiseSFTConfig, tmp_path, model=model, symnoise_alpha=ALPHA)
    assert active_symnoise_hook(model) is None
    activate_symnoise(model, alpha=ALPHA)  # the trainer's hook is gone: a new one can be attached
    assert deactivate_symnoise(model)


@pytest.mark.parametrize("config_cls", [SFTConfig, TrainingArguments])
def test_a_config_without_symnoise_fields_warns_once_and_trains_plain_sft(tmp_path, config_cls, recwarn):
    args = tiny.train_args(config_cls, tmp_path / "given", max_steps=2)
    trainer = SymNoiseSFTTrainer(
        model=tiny.model(),
        args=args,
        train_dataset=tiny.prompt_completion_dataset(),
        processing_class=tiny.tokenizer(),
    )
    trainer.train()
    ours = [w for w in recwarn if "SymNoise is off" in str(w.message)]
    assert len(ours) == 1 and f"got a {config_cls.__name__}, which has no `symnoise_alpha`" in str(ours[0].message)
    assert ours[0].filename == __file__  # points at the caller's line
    assert trainer.args.symnoise_alpha is None
    plain = run(SFTTrainer, SFTConfig, tmp_path, max_steps=2)
    assert [h["loss"] for h in tiny.step_logs(trainer)] == [h["loss"] for h in tiny.step_logs(plain)]


def test_no_config_warns_that_symnoise_is_off():
    # Like SFTTrainer, no config means SFTConfig's defaults, and on a CPU those ask for bf16, which fails after it.
    with pytest.warns(UserWarning, match="got no arguments, which has no `symnoise_alpha`: SymNoise is off"):
        with pytest.raises(ValueError, match="bf16"):
            SymNoiseSFTTrainer(model=tiny.model(), train_dataset=tiny.prompt_completion_dataset(),
                               processing_class=tiny.tokenizer())  # fmt: skip


def test_a_symnoise_config_does_not_warn(tmp_path, recwarn):
    SymNoiseSFTTrainer(
        model=tiny.model(),
        args=tiny.train_args(SymNoiseSFTConfig, tmp_path, symnoise_alpha=ALPHA),
        train_dataset=tiny.prompt_completion_dataset(),
        processing_class=tiny.tokenizer(),
    )
    assert not [w for w in recwarn if "SymNoise is off" in str(w.message)]


def test_triton_backend_is_refused_where_triton_cannot_run(tmp_path, monkeypatch):
    try:
        import triton

        monkeypatch.setattr(triton.knobs.runtime, "interpret", False)  # a CPU without Triton's interpreter
    except ImportError:
        pass  # without Triton at all it runs nowhere
    args = tiny.train_args(SymNoiseSFTConfig, tmp_path, symnoise_alpha=ALPHA, symnoise_backend="triton")
    with pytest.raises(ValueError, match=r"`symnoise_backend='triton'` needs a CUDA device .* this run trains on cpu"):
        SymNoiseSFTTrainer(model=tiny.model(), args=args, train_dataset=tiny.prompt_completion_dataset(),
                           processing_class=tiny.tokenizer())  # fmt: skip


def test_model_card_names_symnoise_and_cites_the_paper(tmp_path):
    trainer = run(SymNoiseSFTTrainer, SymNoiseSFTConfig, tmp_path, symnoise_alpha=ALPHA, max_steps=1)
    trainer.create_model_card(model_name="tiny-symnoise")
    card = (tmp_path / "SymNoiseSFTTrainer" / "README.md").read_text()
    assert "- symnoise" in card and "- sft" in card
    assert "SFT with SymNoise" in card
    assert "SymNoise: Advancing Language Model Fine-tuning with Symmetric Noise" in card and "2312.01523" in card
    assert "@article{yadav2023symnoise" in card


def test_other_symnoise_arguments_are_converted_without_a_warning(tmp_path, recwarn):
    from symnoise_trl import SymNoiseTrainingArguments

    args = SymNoiseTrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none", symnoise_alpha=ALPHA,
                                     symnoise_length="padded")  # fmt: skip
    trainer = SymNoiseSFTTrainer(model=tiny.model(), args=args, train_dataset=tiny.prompt_completion_dataset(),
                                 processing_class=tiny.tokenizer())  # fmt: skip
    assert isinstance(trainer.args, SymNoiseSFTConfig)  # SFTTrainer needs its own config
    assert (trainer.args.symnoise_alpha, trainer.args.symnoise_length) == (ALPHA, "padded")
    assert not [w for w in recwarn if "SymNoise is off" in str(w.message)]


@pytest.mark.parametrize("field, value, match", [
    ("neftune_noise_alpha", 5.0, r"`symnoise_alpha` \(5.0\) and `neftune_noise_alpha` \(5.0\) are both set"),
    ("symnoise_alpha", -1.0, r"`symnoise_alpha` must be finite and >= 0"),
    ("symnoise_seed", -2, r"`symnoise_seed` must be an int in \[0, 2\*\*63\)"),
    ("symnoise_clean_loss_steps", -1, r"`symnoise_clean_loss_steps` must be an int >= 0"),
    ("symnoise_backend", "triton", r"`symnoise_backend='triton'` needs a CUDA device"),
])  # fmt: skip
def test_arguments_changed_after_construction_are_checked_when_training_starts(tmp_path, monkeypatch, field, value,
                                                                               match):  # fmt: skip
    # TrainingArguments are mutable: train() takes the noise from them, through the same checks as __post_init__,
    # and repeats the checks against the model and the device.
    try:
        import triton

        monkeypatch.setattr(triton.knobs.runtime, "interpret", False)  # a CPU without Triton's interpreter
    except ImportError:
        pass
    model = tiny.model()
    args = tiny.train_args(SymNoiseSFTConfig, tmp_path, symnoise_alpha=ALPHA)
    trainer = SymNoiseSFTTrainer(model=model, args=args, train_dataset=tiny.prompt_completion_dataset(),
                                 processing_class=tiny.tokenizer())  # fmt: skip
    setattr(trainer.args, field, value)
    with pytest.raises(ValueError, match=match):
        trainer.train()
    assert active_symnoise_hook(model) is None and trainer.state.global_step == 0
