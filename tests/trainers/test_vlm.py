"""SymNoiseSFTTrainer on tiny multimodal models of the ten families in `helpers/tiny_vlm.py` (the nine TRL's own VLM
SFT tests train, and Idefics3), with TRL's vision data formats, still videos and Gemma 4's audio: alpha=0 is
SFTTrainer (float32: every logged loss and grad norm within 2e-6 over 20 steps; bf16: within two bf16 ulps), the
loss is the mean of the two halves computed by hand, the language model sees the same image, video or audio features
in both halves and noise on text tokens only, eval is plain, two-pass is one-pass, and a batch key SymNoise does not
know stops the run, by name, before anything trains."""

import copy
import math

import pytest
import torch
from peft import LoraConfig
from transformers import AutoProcessor, ProcessorMixin
from trl import SFTConfig, SFTTrainer
from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

from symnoise_trl import SymNoiseSFTConfig, SymNoiseSFTTrainer
from symnoise_trl.cli.command import run as run_cli
from symnoise_trl.kernels import rademacher

from helpers import tiny, tiny_vlm

# These families also run at the lowest versions pyproject.toml allows (scripts/test_floors.sh). At transformers
# 5.17 Idefics3's image processor and Gemma4Processor's module need torchvision (not installed: no CPU build for
# torch 2.13 on the index).
FLOORS = ("llava", "llava_next", "qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_5", "qwen3_5_moe", "gemma3")


def case(family: str, *values, id: str | None = None):
    """A test case of `family` (marked for the floors lane where the family runs there)."""
    return pytest.param(family, *values, marks=[pytest.mark.floors] if family in FLOORS else [], id=id)


FAMILIES = [case(f) for f in tiny_vlm.FAMILIES]
ALPHA = 5.0
D = tiny_vlm.D
# Alpha 0 against SFTTrainer: 20 steps at TRL's default learning rate. The doubled batch sums the same per-token terms
# over twice the rows, so float32 rounding differs. Measured: the losses within 2.5e-7; the grad norms within 5e-7,
# but Gemma 4's within 3e-6 (step to step, not growing: its grad norm is that sensitive to rounding at any batch
# size); the parameters within 3.6e-7. At lr 1e-3 AdamW amplifies the rounding through weights whose gradient is about
# 0 (Gemma 4's grad norm then drifts by up to 3.6e-5 by step 17, while every step-0 gradient agrees within 4e-7):
# docs/vision-language.md.
EXACT = dict(max_steps=20, learning_rate=2e-5)
EXACT_RTOL = {"loss": 1e-6, "grad_norm": 5e-6, "entropy": 1e-6, "mean_token_accuracy": 1e-6}
# 1% of one AdamW step at lr 1e-3. AdamW moves a weight whose gradient is about 0 by about lr whatever the gradient's
# size, so float rounding shows there: up to 2e-6 between runs that sum the same terms in another order (the
# attention key biases of the vision towers, whose true gradient is 0; idefics3's MLP with prompt-completion data).
ADAM_ATOL = 1e-5
# The language model's attention (Idefics3's is `text_model`): Gemma 4 wraps its vision projections in a module LoRA
# does not adapt.
LORA = LoraConfig(r=4, lora_alpha=8, target_modules=r".*(language_model|text_model).*\.(q_proj|v_proj)",
                  task_type="CAUSAL_LM")  # fmt: skip
# Batches of still videos (Qwen, Gemma 4) and of audio clips (Gemma 4) come from a collator (TRL's vision collator
# takes images only); the data set is then passed as it is.
CUSTOM_COLLATOR = dict(remove_unused_columns=False, dataset_kwargs={"skip_prepare_dataset": True})


def media(family: str, kind: str):
    """(train_dataset, data_collator, argument overrides) of a media kind: an image data format of
    `tiny_vlm.DATA`, "video" or "audio"."""
    if kind == "video":
        collator = DataCollatorForVisionLanguageModeling(tiny_vlm.processor(family))
        return tiny_vlm.DATA["messages"](), tiny_vlm.still_video_collator(family, collator), CUSTOM_COLLATOR
    if kind == "audio":
        return tiny_vlm.audio_dataset(16), tiny_vlm.audio_collator(family), CUSTOM_COLLATOR
    return tiny_vlm.DATA[kind](), None, {}


def run(trainer_cls, config_cls, tmp_path, family, kind="messages", model=None, peft_config=None, **overrides):
    dataset, collator, media_args = media(family, kind)
    args = tiny.train_args(config_cls, tmp_path / f"{trainer_cls.__name__}-{family}", **media_args, **overrides)
    torch.manual_seed(0)  # TRL 1.14 (the floors) initialises LoRA weights before Trainer seeds the run
    trainer = trainer_cls(
        model=model or tiny_vlm.model(family),
        args=args,
        train_dataset=dataset,
        data_collator=collator,
        processing_class=tiny_vlm.processor(family),
        peft_config=peft_config,
    )
    trainer.train()
    return trainer


def assert_logged_alike(plain, doubled, steps: int, rel: float | dict, **param_tolerance):
    """Every step's logged metrics of `doubled` within `rel` (one for all, or by metric) of `plain`'s (the token count
    exactly), and the same parameters at the end."""
    plain_logs, doubled_logs = tiny.step_logs(plain), tiny.step_logs(doubled)
    assert len(plain_logs) == len(doubled_logs) == steps
    for step, (p, d) in enumerate(zip(plain_logs, doubled_logs, strict=True)):
        assert d["num_tokens"] == p["num_tokens"]
        for key in ("loss", "grad_norm", "entropy", "mean_token_accuracy"):
            tolerance = rel[key] if isinstance(rel, dict) else rel
            assert d[key] == pytest.approx(p[key], rel=tolerance, abs=1e-7), f"{key} at step {step}"
    for (name, p), (_, d) in zip(plain.model.named_parameters(), doubled.model.named_parameters(), strict=True):
        torch.testing.assert_close(d, p, **param_tolerance, msg=name)


def placeholders(ids: torch.Tensor, family: str) -> torch.Tensor:
    return torch.isin(ids, torch.tensor(tiny_vlm.placeholder_ids(family)))


def noise_by_hand(batch, family, seed):
    """s * eps of docs/noise-stream.md for the first copy: L counts the text tokens of each row (not the image, video
    or audio placeholders, not padding), and the placeholders and padding get no noise."""
    ids = batch["input_ids"]
    text = batch["attention_mask"].bool() & ~placeholders(ids, family)
    lengths = text.sum(1, keepdim=True).double()
    scale = torch.where(text, ALPHA / torch.sqrt(3 * lengths * D), 0.0).float()
    eps = rademacher(ids.numel(), D, seed).reshape(*ids.shape, D).float()
    return scale[..., None] * eps, text


# Every family on conversational data (a text-only row in four); the other formats on the families TRL's own tests
# train with them (multi-image: Qwen2.5-VL; prompt-completion: Qwen2.5-VL and the Gemmas), and multi-image also where
# the images of a row are batched differently (LLaVA-NeXT's crops, Idefics3's per-example stack, Gemma 4's patch rows).
# The halves test below runs every family on all three formats.
EXACT_CASES = [case(f, "messages") for f in tiny_vlm.FAMILIES]
EXACT_CASES += [case(f, "multi_image") for f in ("qwen2_5_vl", "llava_next", "idefics3", "gemma4")]
EXACT_CASES += [case(f, "prompt_completion") for f in ("qwen2_5_vl", "gemma3", "gemma4")]


@pytest.mark.parametrize(("family", "data"), EXACT_CASES)
def test_alpha_zero_equals_sft_over_20_steps_in_float32(tmp_path, family, data):
    plain = run(SFTTrainer, SFTConfig, tmp_path, family, data, **EXACT)
    doubled = run(SymNoiseSFTTrainer, SymNoiseSFTConfig, tmp_path, family, data, symnoise_alpha=0.0, **EXACT)
    assert_logged_alike(plain, doubled, EXACT["max_steps"], EXACT_RTOL, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("family", "kind"),
    [case(f, "video") for f in tiny_vlm.VIDEO_FAMILIES] + [case(f, "audio") for f in tiny_vlm.AUDIO_FAMILIES],
)
def test_alpha_zero_equals_sft_with_videos_and_audio(tmp_path, family, kind):
    plain = run(SFTTrainer, SFTConfig, tmp_path, family, kind, **EXACT)
    doubled = run(SymNoiseSFTTrainer, SymNoiseSFTConfig, tmp_path, family, kind, symnoise_alpha=0.0, **EXACT)
    assert_logged_alike(plain, doubled, EXACT["max_steps"], EXACT_RTOL, rtol=1e-5, atol=1e-6)


# LoRA on the language model's attention, where that model differs: Llama (LLaVA), Idefics3's text_model, Qwen3.5-MoE,
# Gemma 4.
@pytest.mark.parametrize("family", [case(f) for f in ("llava", "idefics3", "qwen3_5_moe", "gemma4")])
def test_alpha_zero_equals_sft_with_lora(tmp_path, family):
    plain = run(SFTTrainer, SFTConfig, tmp_path, family, peft_config=LORA)
    doubled = run(SymNoiseSFTTrainer, SymNoiseSFTConfig, tmp_path, family, peft_config=LORA, symnoise_alpha=0.0)
    assert_logged_alike(plain, doubled, 3, 1e-5, rtol=1e-5, atol=ADAM_ATOL)


def bf16_ulp(value: float) -> float:
    return 2.0 ** (math.floor(math.log2(abs(value))) - 7)  # bf16 keeps 8 significant bits


@pytest.mark.parametrize("family", FAMILIES)
def test_alpha_zero_in_bf16_is_sft_within_two_bf16_ulps(tmp_path, family):
    """In bf16 the doubled batch rounds differently: measured, the grad norms differ by at most one bf16 ulp over
    10 steps (Qwen2-VL's at one step; the others' not at all), the losses by at most 2.3e-5 relative."""
    bf16 = dict(max_steps=10, learning_rate=2e-5)
    plain = run(SFTTrainer, SFTConfig, tmp_path, family, model=tiny_vlm.model(family).to(torch.bfloat16), **bf16)
    doubled = run(SymNoiseSFTTrainer, SymNoiseSFTConfig, tmp_path, family,
                  model=tiny_vlm.model(family).to(torch.bfloat16), symnoise_alpha=0.0, **bf16)  # fmt: skip
    plain, doubled = tiny.step_logs(plain), tiny.step_logs(doubled)
    assert len(plain) == len(doubled) == 10
    for step, (p, d) in enumerate(zip(plain, doubled, strict=True)):
        assert d["num_tokens"] == p["num_tokens"]
        for key in ("loss", "grad_norm"):
            assert abs(d[key] - p[key]) <= 2 * bf16_ulp(p[key]), f"{key} at step {step}: {d[key]} vs {p[key]}"


VARIANTS = [("messages", "full"), ("multi_image", "full"), ("prompt_completion", "lora")]  # data and adapter
HALVES = [case(f, *v, id=f"{f}-{v[0]}-{v[1]}") for f in tiny_vlm.FAMILIES for v in VARIANTS]
HALVES += [case(f, "video", "full", id=f"{f}-video") for f in tiny_vlm.VIDEO_FAMILIES]
HALVES += [case(f, "audio", "full", id=f"{f}-audio") for f in tiny_vlm.AUDIO_FAMILIES]


@pytest.mark.parametrize(("family", "kind", "adapter"), HALVES)
def test_noise_goes_on_text_tokens_and_the_loss_is_the_mean_of_the_halves(tmp_path, family, kind, adapter):
    model = tiny_vlm.model(family)
    # The plain model and its loss, before the trainer touches it (LoRA starts as the identity: B = 0).
    reference = copy.deepcopy(model).train()
    recorder = tiny.EmbeddingRecorder(model)
    dataset, collator, media_args = media(family, kind)
    trainer = tiny.BatchRecordingTrainer(
        model=model,
        args=tiny.train_args(SymNoiseSFTConfig, tmp_path, symnoise_alpha=ALPHA, max_steps=1, **media_args),
        train_dataset=dataset,
        data_collator=collator,
        processing_class=tiny_vlm.processor(family),
        peft_config=LORA if adapter == "lora" else None,
    )
    seeds = tiny.record_seeds(trainer)
    trainer.train()
    batch, (_, seed) = trainer.batches[0], seeds[0]
    media_key = {"video": "pixel_values_videos", "audio": "input_features"}.get(kind, "pixel_values")
    assert media_key in batch
    call = [c for c in recorder.calls if c["training"]][0]
    b = batch["input_ids"].shape[0]
    assert torch.equal(call["ids"], torch.cat([batch["input_ids"]] * 2))  # the doubled batch

    noise, text = noise_by_hand(batch, family, seed)
    raw, received = call["raw"][:b], call["received"]
    features = placeholders(batch["input_ids"], family)
    assert features.any() and text.any()
    # Text tokens: X + s*eps in the first copy, X - s*eps in the second (the op rounds once: a float32 ulp).
    torch.testing.assert_close(received[:b][text], (raw + noise)[text], rtol=0, atol=1e-6)
    torch.testing.assert_close(received[b:][text], (raw - noise)[text], rtol=0, atol=1e-6)
    # Placeholder positions: the same image, video or audio features in both halves, and features, not the
    # placeholder's embedding.
    assert torch.equal(received[:b][features], received[b:][features])
    assert not torch.allclose(received[:b][features], raw[features])

    # The loss by hand: the plain model on the original batch, once with +s*eps and once with -s*eps on its text
    # embeddings; each copy has the same label tokens, so the doubled batch's token mean is the mean of the two. With
    # the router loss TRL adds for Qwen3.5-MoE (coefficient 1e-3), up to a cross term far below the tolerance
    # (tests/trainers/test_moe.py).
    router = {"output_router_logits": True} if trainer.aux_loss_enabled else {}
    losses = []
    for sign in (1.0, -1.0):
        handle = reference.get_input_embeddings().register_forward_hook(lambda m, a, out, s=sign: out + s * noise)
        with torch.no_grad():
            losses.append(reference(**batch, **router).loss.item())
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
        train_dataset=tiny_vlm.DATA["messages"](),
        eval_dataset=tiny_vlm.conversational_dataset(4, seed=1),
        processing_class=tiny_vlm.processor(family),
    )
    trainer.train()
    evals = [c for c in recorder.calls if not c["training"]]
    trains = [c for c in recorder.calls if c["training"]]
    assert len(trains) == 2 and len(evals) == 2
    for call in evals:
        assert call["raw"].shape[0] == 4  # not doubled
        text = ~placeholders(call["ids"], family)
        assert torch.equal(call["received"][text], call["raw"][text])  # no noise
    for call in trains:
        assert call["raw"].shape[0] == 8
        text = ~placeholders(call["ids"], family)
        assert not torch.equal(call["received"][text], call["raw"][text])


TWO_PASS = [case(f, kind) for kind, families in (("multi_image", tiny_vlm.FAMILIES),
            ("video", ("qwen2_5_vl", "gemma4")), ("audio", tiny_vlm.AUDIO_FAMILIES)) for f in families]  # fmt: skip


@pytest.mark.parametrize(("family", "kind"), TWO_PASS)
def test_two_pass_matches_the_doubled_batch(tmp_path, family, kind):
    # Without Qwen3.5-MoE's router loss: with noise, the doubled batch's load-balancing loss differs from the mean of
    # the passes' by a cross term, which AdamW turns into lr-sized moves (tests/trainers/test_moe.py weighs it).
    router = {"router_aux_loss_coef": 0.0} if family == "qwen3_5_moe" else {}
    one = run(SymNoiseSFTTrainer, SymNoiseSFTConfig, tmp_path / "one", family, kind, symnoise_alpha=ALPHA, **router)
    two = run(SymNoiseSFTTrainer, SymNoiseSFTConfig, tmp_path / "two", family, kind, symnoise_alpha=ALPHA,
              symnoise_two_pass=True, **router)  # fmt: skip
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


@pytest.mark.floors
def test_a_batch_key_symnoise_does_not_know_stops_the_run_by_name_before_anything_trains(tmp_path):
    family = "llava"
    collator = DataCollatorForVisionLanguageModeling(tiny_vlm.processor(family))

    def with_unknown_key(examples):
        return dict(collator(examples), pixel_crop_ids=torch.zeros(4, 3, dtype=torch.int64))

    model = tiny_vlm.model(family)
    before = copy.deepcopy(model.state_dict())
    trainer = SymNoiseSFTTrainer(
        model=model,
        args=tiny.train_args(SymNoiseSFTConfig, tmp_path / "out", symnoise_alpha=0.0, **CUSTOM_COLLATOR),
        train_dataset=tiny_vlm.DATA["messages"](),
        data_collator=with_unknown_key,
        processing_class=tiny_vlm.processor(family),
    )
    with pytest.raises(ValueError, match="double the batch key 'pixel_crop_ids'") as error:
        trainer.train()
    assert "\n" not in str(error.value)
    assert trainer.state.global_step == 0
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name


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
