"""Where embedding-noise methods broke for NEFTune's users, each on both trainers (SymNoiseSFTTrainer and
SymNoiseTrainer): padding side, a model without token embeddings, Gemma's scaled embeddings, generation and
evaluation from a callback, LoRA with reentrant gradient checkpointing, and NEFTune switched on beside SymNoise."""

import copy
import math

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import (
    DataCollatorForSeq2Seq,
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    LlamaForCausalLM,
    TrainerCallback,
)
from transformers.integrations.neftune import activate_neftune

from symnoise_trl import (
    SymNoiseSFTConfig,
    SymNoiseSFTTrainer,
    SymNoiseTrainer,
    SymNoiseTrainingArguments,
    activate_symnoise,
    active_symnoise_hook,
)

from helpers import tiny

# Also run at the lowest versions pyproject.toml allows (scripts/test_floors.sh).
pytestmark = pytest.mark.floors

ALPHA = 5.0
TRAINERS = ["sft", "plain"]


def make_trainer(kind, tmp_path, model=None, collator=None, tokenized=False, peft_config=None, **overrides):
    """A SymNoise trainer of `kind` on the tiny data: SFT from prompt-completion rows (or token ids with `collator`),
    the plain Trainer from token ids with prompt-masked labels."""
    model = model if model is not None else tiny.model()
    if kind == "sft":
        args = tiny.train_args(SymNoiseSFTConfig, tmp_path / kind, symnoise_alpha=ALPHA, **overrides)
        data = tiny.tokenized(prompt_labels=True) if tokenized or collator else tiny.prompt_completion_dataset()
        return SymNoiseSFTTrainer(model=model, args=args, train_dataset=data, processing_class=tiny.tokenizer(),
                                  data_collator=collator, peft_config=peft_config)  # fmt: skip
    if peft_config is not None:
        model = get_peft_model(model, peft_config)
    args = tiny.train_args(SymNoiseTrainingArguments, tmp_path / kind, symnoise_alpha=ALPHA, **overrides)
    return SymNoiseTrainer(model=model, args=args, train_dataset=tiny.tokenized(prompt_labels=True),
                           data_collator=collator or tiny.COLLATORS["padding_with_labels"]())  # fmt: skip


def training_calls(recorder):
    return [c for c in recorder.calls if c["training"]]


@pytest.mark.parametrize("kind", TRAINERS)
def test_left_and_right_padding_give_each_sequence_the_same_scale(tmp_path, kind):
    scales = {}
    for side in ("left", "right"):
        tokenizer = copy.deepcopy(tiny.tokenizer())
        tokenizer.padding_side = side
        model = tiny.model()
        recorder = tiny.EmbeddingRecorder(model)
        make_trainer(kind, tmp_path / side, model, collator=DataCollatorForSeq2Seq(tokenizer, padding=True),
                     max_steps=2).train()  # fmt: skip
        per_sequence = []
        for call in training_calls(recorder):
            b = call["raw"].shape[0] // 2
            ids, noise = call["ids"][:b], (call["received"][:b] - call["raw"][:b]).abs().mean(-1)  # (B, L)
            real = ids != tokenizer.pad_token_id
            lengths = real.sum(1)
            assert torch.all(noise[~real] == 0)  # no noise on padding, on either side
            expected = ALPHA / torch.sqrt(3.0 * lengths * 64)
            torch.testing.assert_close(noise.sum(1) / lengths, expected, rtol=1e-3, atol=0)
            per_sequence.append((ids[real].tolist(), (noise.sum(1) / lengths).tolist()))
        scales[side] = per_sequence
    for (ids_l, s_l), (ids_r, s_r) in zip(scales["left"], scales["right"], strict=True):
        assert ids_l == ids_r and s_l == pytest.approx(s_r, rel=1e-3)


class NoTokenEmbeddings(LlamaForCausalLM):
    def get_input_embeddings(self):
        raise NotImplementedError


class LinearEmbeddings(LlamaForCausalLM):
    def get_input_embeddings(self):
        return self.lm_head


@pytest.mark.parametrize("kind", TRAINERS)
@pytest.mark.parametrize(
    "model_cls, found",
    [(NoTokenEmbeddings, "raised NotImplementedError"), (LinearEmbeddings, "returned Linear, not a token embedding")],
)
def test_a_model_without_token_embeddings_is_refused_in_one_line(tmp_path, kind, model_cls, found):
    model = tiny.model()
    model.__class__ = model_cls
    with pytest.raises(ValueError, match=f"^SymNoise cannot find the input embeddings of {model_cls.__name__}: ") as e:
        make_trainer(kind, tmp_path, model, tokenized=True)
    assert found in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ValueError, match=model_cls.__name__):
        activate_symnoise(model, alpha=ALPHA)


def tiny_gemma3():
    tokenizer = tiny.tokenizer()
    config = Gemma3TextConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                              num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=256,
                              sliding_window=16, pad_token_id=tokenizer.pad_token_id,
                              eos_token_id=tokenizer.eos_token_id, bos_token_id=None)  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return Gemma3ForCausalLM(config)


@pytest.mark.parametrize("kind", TRAINERS)
def test_gemma3_noise_is_added_after_the_sqrt_d_scale(tmp_path, kind):
    # Gemma's embedding module returns table[ids] * sqrt(d); the hook noises that output, as NEFTune's does.
    model = tiny_gemma3()
    embeddings = model.get_input_embeddings()
    assert embeddings.scalar_embed_scale == pytest.approx(math.sqrt(64))
    table = embeddings.weight.detach().clone()  # before the step changes it
    recorder = tiny.EmbeddingRecorder(model)
    make_trainer(kind, tmp_path, model, tokenized=True, max_steps=1).train()
    (call,) = training_calls(recorder)
    b = call["raw"].shape[0] // 2
    torch.testing.assert_close(
        call["raw"][:b], table[call["ids"][:b]] * math.sqrt(64)
    )  # the recorded output is the scaled one
    noise = call["received"][:b] - call["raw"][:b]
    real = call["ids"][:b] != tiny.tokenizer().pad_token_id
    expected = ALPHA / torch.sqrt(3.0 * real.sum(1, keepdim=True) * 64)  # s: not multiplied by sqrt(d)
    torch.testing.assert_close(noise.abs().mean(-1)[real], expected.expand_as(real)[real], rtol=1e-3, atol=0)
    torch.testing.assert_close(call["received"][b:] - call["raw"][b:], -noise, rtol=0, atol=1e-5)


class GenerateAndEvaluate(TrainerCallback):
    """Generates and evaluates after every optimizer step, as a user's sampling or eval callback does."""

    def __init__(self, trainer):
        self.trainer = trainer

    def on_step_end(self, args, state, control, model=None, **kwargs):
        prompt = tiny.tokenizer()(["sort the numbers 3 1 2 :"], return_tensors="pt")
        model.generate(**prompt, max_new_tokens=3, do_sample=False, pad_token_id=tiny.tokenizer().pad_token_id)
        self.trainer.evaluate(tiny.tokenized(4, seed=1, prompt_labels=True))
        model.train()


@pytest.mark.parametrize("kind", TRAINERS)
def test_generation_and_evaluation_in_a_callback_see_no_noise_and_change_no_step(tmp_path, kind):
    received = {}
    for with_callback in (False, True):
        model = tiny.model()
        recorder = tiny.EmbeddingRecorder(model)
        trainer = make_trainer(kind, tmp_path / str(with_callback), model, tokenized=True, max_steps=3,
                               per_device_eval_batch_size=4)  # fmt: skip
        if with_callback:
            trainer.add_callback(GenerateAndEvaluate(trainer))
        trainer.train()
        # Training forwards run on the doubled batch of 4; generation (1 row, in training mode: the callback does not
        # switch) and evaluation (4 rows) must see the embeddings as they are.
        steps = [c for c in recorder.calls if c["ids"].shape[0] == 8]
        others = [c for c in recorder.calls if c["ids"].shape[0] != 8]
        assert len(steps) == 3 and len(others) == (3 * (3 + 1) if with_callback else 0)  # 3 new tokens, 1 eval batch
        for call in others:
            assert torch.equal(call["received"], call["raw"])
        received[with_callback] = [c["received"] for c in steps]
    for plain, called in zip(received[False], received[True], strict=True):
        assert torch.equal(plain, called)  # the same noise, and the same parameters that it noised


@pytest.mark.parametrize("kind", TRAINERS)
def test_lora_with_reentrant_checkpointing_gives_every_adapter_a_gradient(tmp_path, kind):
    grads = {}

    class GradientNorms(TrainerCallback):
        def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
            for name, p in model.named_parameters():
                if "lora_" in name:
                    grads[name] = 0.0 if p.grad is None else p.grad.norm().item()

    peft_config = LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"], task_type="CAUSAL_LM"
    )
    # Two steps: LoRA starts with B = 0, so A's first gradient is 0 whatever the checkpointing does.
    trainer = make_trainer(kind, tmp_path, tokenized=True, peft_config=peft_config, max_steps=2,
                           gradient_checkpointing=True,
                           gradient_checkpointing_kwargs={"use_reentrant": True})  # fmt: skip
    trainer.add_callback(GradientNorms())
    trainer.train()
    assert len(grads) == 2 * 3 * 2  # 2 layers x 3 modules x (A, B)
    assert all(norm > 0 for norm in grads.values()), {n: g for n, g in grads.items() if g == 0}


@pytest.mark.parametrize("kind", TRAINERS)
def test_neftune_switched_on_after_construction_is_refused(tmp_path, kind):
    model = tiny.model()
    trainer = make_trainer(kind, tmp_path, model, tokenized=True)
    trainer.neftune_noise_alpha = 5.0  # Trainer activates NEFTune in train() from this attribute
    with pytest.raises(ValueError, match=r"`neftune_noise_alpha` \(5.0 on the trainer\) are both set"):
        trainer.train()
    assert trainer.state.global_step == 0


def test_neftune_active_on_a_model_is_refused_by_activate_symnoise():
    model = tiny.model()
    activate_neftune(model, 5.0)
    with pytest.raises(ValueError, match=r"`neftune_noise_alpha` \(5.0 on the model's embeddings\) are both set"):
        activate_symnoise(model, alpha=ALPHA)


@pytest.mark.parametrize("kind", TRAINERS)
def test_symnoise_alpha_set_back_to_none_trains_plain_whatever_the_other_fields(tmp_path, kind):
    # A baseline run from the same arguments: the other symnoise_* fields stay set, and SymNoise is simply off.
    trainer = make_trainer(kind, tmp_path, symnoise_two_pass=True, symnoise_clean_loss_steps=1, max_steps=2)
    trainer.args.symnoise_alpha = None
    seen = []
    trainer.model.get_input_embeddings().register_forward_hook(
        lambda module, args, out: seen.append((active_symnoise_hook(trainer.model), out.shape[0]))
    )
    trainer.train()
    assert trainer.state.global_step == 2 and trainer.symnoise_seeds is None
    assert seen and all(hook is None for hook, _ in seen)  # no hook, no doubled batch
    assert not any("clean_loss" in log for log in trainer.state.log_history)
