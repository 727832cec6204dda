"""SymNoiseSFTTrainer on tiny vision-language models of four families (LLaVA, Qwen2-VL, Idefics3, Gemma 3) with TRL's
vision data formats: alpha=0 is SFTTrainer, the loss is the mean of the two halves computed by hand, the language model
sees the same image features in both halves and noise on text tokens only, eval is plain, two-pass is one-pass."""

import copy
import math

import pytest
import torch
from peft import LoraConfig
from transformers import AutoProcessor, ProcessorMixin
from trl import SFTConfig, SFTTrainer

from symnoise_trl import SymNoiseSFTConfig, SymNoiseSFTTrainer
from symnoise_trl.cli.command import run as run_cli
from symnoise_trl.kernels import rademacher

from helpers import tiny, tiny_vlm

# LLaVA, Qwen2-VL and Gemma 3 also run at the lowest versions pyproject.toml allows (scripts/test_floors.sh);
# Idefics3's image processor needs torchvision at transformers 5.17 (not installed: no CPU build for torch 2.13 on the
# index).
FAMILIES = [pytest.param(f, marks=pytest.mark.floors) if f != "idefics3" else f for f in tiny_vlm.FAMILIES]
ALPHA = 5.0
D = tiny_vlm.D
DATA = {
    "messages": lambda: tiny_vlm.conversational_dataset(16, text_only_every=4),  # every 4th row has no image
    "prompt_completion": lambda: tiny_vlm.prompt_completion_dataset(16),
}
# 1% of one AdamW step at lr 1e-3. AdamW moves a weight whose gradient is about 0 by about lr whatever the gradient's
# size, so float rounding shows there: up to 2e-6 between runs that sum the same terms in another order (the
# attention key biases of the vision towers, whose true gradient is 0; idefics3's MLP with prompt-completion data).
ADAM_ATOL = 1e-5
VARIANTS = [("messages", "full"), ("prompt_completion", "full"), ("messages", "lora")]  # data and adapter
LORA = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")


def run(trainer_cls, config_cls, tmp_path, family, data="messages", model=None, peft_config=None, **overrides):
    args = tiny.train_args(config_cls, tmp_path / f"{trainer_cls.__name__}-{family}", **overrides)
    trainer = trainer_cls(
        model=model or tiny_vlm.model(family),
        args=args,
        train_dataset=DATA[data](),
        processing_class=tiny_vlm.processor(family),
        peft_config=peft_config,
    )
    trainer.train()
    return trainer


def noise_by_hand(batch, family, seed):
    """s * eps of docs/noise-stream.md for the first copy: L counts the text tokens of each row (not the image
    placeholders, not padding), and the placeholders and padding get no noise."""
    ids = batch["input_ids"]
    text = batch["attention_mask"].bool() & (ids != tiny_vlm.image_token_id(family))
    lengths = text.sum(1, keepdim=True).double()
    scale = torch.where(text, ALPHA / torch.sqrt(3 * lengths * D), 0.0).float()
    eps = rademacher(ids.numel(), D, seed).reshape(*ids.shape, D).float()
    return scale[..., None] * eps, text


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(("data", "adapter"), VARIANTS)
def test_alpha_zero_reproduces_sft(tmp_path, family, data, adapter):
    peft_config = LORA if adapter == "lora" else None
    plain = run(SFTTrainer, SFTConfig, tmp_path, family, data, peft_config=peft_config)
    doubled = run(SymNoiseSFTTrainer, SymNoiseSFTConfig, tmp_path, family, data, peft_config=peft_config,
                  symnoise_alpha=0.0)  # fmt: skip
    tiny.assert_trained_alike(plain, doubled, param_atol=ADAM_ATOL)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(("data", "adapter"), VARIANTS)
def test_noise_goes_on_text_tokens_and_the_loss_is_the_mean_of_the_halves(tmp_path, family, data, adapter):
    model = tiny_vlm.model(family)
    # The plain model and its loss, before the trainer touches it (LoRA starts as the identity: B = 0).
    reference = copy.deepcopy(model).train()
    recorder = tiny.EmbeddingRecorder(model)
    trainer = tiny.BatchRecordingTrainer(
        model=model,
        args=tiny.train_args(SymNoiseSFTConfig, tmp_path, symnoise_alpha=ALPHA, max_steps=1),
        train_dataset=DATA[data](),
        processing_class=tiny_vlm.processor(family),
        peft_config=LORA if adapter == "lora" else None,
    )
    seeds = tiny.record_seeds(trainer)
    trainer.train()
    batch, (_, seed) = trainer.batches[0], seeds[0]
    assert "pixel_values" in batch
    call = [c for c in recorder.calls if c["training"]][0]
    b = batch["input_ids"].shape[0]
    assert torch.equal(call["ids"], torch.cat([batch["input_ids"]] * 2))  # the doubled batch

    noise, text = noise_by_hand(batch, family, seed)
    raw, received = call["raw"][:b], call["received"]
    placeholders = batch["input_ids"] == tiny_vlm.image_token_id(family)
    assert placeholders.any() and text.any()
    # Text tokens: X + s*eps in the first copy, X - s*eps in the second (the op rounds once: a float32 ulp).
    torch.testing.assert_close(received[:b][text], (raw + noise)[text], rtol=0, atol=1e-6)
    torch.testing.assert_close(received[b:][text], (raw - noise)[text], rtol=0, atol=1e-6)
    # Image positions: the same image features in both halves, and features, not the placeholder's embedding.
    assert torch.equal(received[:b][placeholders], received[b:][placeholders])
    assert not torch.allclose(received[:b][placeholders], raw[placeholders])

    # The loss by hand: the plain model on the original batch, once with +s*eps and once with -s*eps on its text
    # embeddings; each copy has the same label tokens, so the doubled batch's token mean is the mean of the two.
    losses = []
    for sign in (1.0, -1.0):
        handle = reference.get_input_embeddings().register_forward_hook(lambda m, a, out, s=sign: out + s * noise)
        with torch.no_grad():
            losses.append(reference(**batch).loss.item())
        handle.remove()
    assert tiny.step_logs(trainer)[0]["loss"] == pytest.approx(sum(losses) / 2, rel=1e-5)
    assert losses[0] != pytest.approx(losses[1], rel=1e-6)  # the halves really differ


@pytest.mark.parametrize("family", FAMILIES)
def test_evaluation_sees_the_batch_once_and_no_noise(tmp_path, family):
    model = tiny_vlm.model(family)
    recorder = tiny.EmbeddingRecorder(model)
    trainer = SymNoiseSFTTrainer(
        model=model,
        args=tiny.train_args(
            SymNoiseSFTConfig,
            tmp_path,
            symnoise_alpha=ALPHA,
            max_steps=2,
            eval_strategy="steps",
            eval_steps=1,
            per_device_eval_batch_size=4,
        ),  # fmt: skip
        train_dataset=DATA["messages"](),
        eval_dataset=tiny_vlm.conversational_dataset(4, seed=1),
        processing_class=tiny_vlm.processor(family),
    )
    trainer.train()
    evals = [c for c in recorder.calls if not c["training"]]
    trains = [c for c in recorder.calls if c["training"]]
    assert len(trains) == 2 and len(evals) == 2
    image = tiny_vlm.image_token_id(family)
    for call in evals:
        assert call["raw"].shape[0] == 4  # not doubled
        text = call["ids"] != image
        assert torch.equal(call["received"][text], call["raw"][text])  # no noise
    for call in trains:
        assert call["raw"].shape[0] == 8
        text = call["ids"] != image
        assert not torch.equal(call["received"][text], call["raw"][text])


@pytest.mark.parametrize("family", FAMILIES)
def test_two_pass_matches_the_doubled_batch(tmp_path, family):
    one = run(SymNoiseSFTTrainer, SymNoiseSFTConfig, tmp_path / "one", family, symnoise_alpha=ALPHA)
    two = run(SymNoiseSFTTrainer, SymNoiseSFTConfig, tmp_path / "two", family, symnoise_alpha=ALPHA,
              symnoise_two_pass=True)  # fmt: skip
    for a, b in zip(tiny.step_logs(one), tiny.step_logs(two), strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5)
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-4)
        assert b["num_tokens"] == a["num_tokens"]
    for (name, a), (_, b) in zip(one.model.named_parameters(), two.model.named_parameters(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=ADAM_ATOL, msg=name)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_text_only_dataset_trains_a_vision_language_model(tmp_path, family):
    data = tiny_vlm.conversational_dataset(8).remove_columns("images")
    model = tiny_vlm.model(family)
    recorder = tiny.EmbeddingRecorder(model)
    trainer = SymNoiseSFTTrainer(
        model=model,
        args=tiny.train_args(SymNoiseSFTConfig, tmp_path, symnoise_alpha=ALPHA, max_steps=2),
        train_dataset=data,
        processing_class=tiny_vlm.processor(family),
    )
    trainer.train()
    assert all(math.isfinite(h["loss"]) for h in tiny.step_logs(trainer))
    call = [c for c in recorder.calls if c["training"]][0]
    b = call["raw"].shape[0] // 2
    assert call["received"].shape[0] == 2 * b and not torch.equal(call["received"][:b], call["raw"][:b])
    torch.testing.assert_close((call["received"][:b] + call["received"][b:]) / 2, call["raw"][:b], rtol=0, atol=1e-6)


def test_symnoise_sft_trains_a_vision_language_model_folder(tmp_path):
    folder, data, out = tmp_path / "tiny-llava", tmp_path / "train.parquet", tmp_path / "out"
    tiny_vlm.model("llava").save_pretrained(folder)
    tiny_vlm.processor("llava").save_pretrained(folder)
    tiny_vlm.conversational_dataset(8, text_only_every=4).to_parquet(data)  # images stored in the file
    argv = ["--model_name_or_path", str(folder), "--dataset_name", str(data), "--symnoise_alpha", "5",
            "--output_dir", str(out), "--max_steps", "2", "--per_device_train_batch_size", "4", "--logging_steps", "1",
            "--use_cpu", "true", "--bf16", "false", "--report_to", "none", "--disable_tqdm", "true"]  # fmt: skip
    trainer = run_cli(argv)
    assert isinstance(trainer.processing_class, ProcessorMixin)  # loaded from the folder by SFTTrainer
    losses = [h["loss"] for h in tiny.step_logs(trainer)]
    assert len(losses) == 2 and all(map(math.isfinite, losses))
    assert isinstance(AutoProcessor.from_pretrained(out), type(tiny_vlm.processor("llava")))
    assert "| `symnoise_alpha` | 5.0 |" in (out / "README.md").read_text()
