"""activate_symnoise / deactivate_symnoise / symnoise_forward, and the custom-loop example."""

import runpy
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from peft import LoraConfig, get_peft_model

from symnoise_trl import (
    activate_symnoise,
    active_symnoise_hook,
    deactivate_symnoise,
    symnoise_forward,
)
from symnoise_trl.hf.model import placeholder_token_ids

from helpers import tiny

# Also run at the lowest versions pyproject.toml allows (scripts/test_floors.sh).
pytestmark = pytest.mark.floors

EXAMPLE = Path(__file__).parents[2] / "examples" / "custom_loop.py"


def batch():
    tok = tiny.tokenizer()
    enc = tok(["sort the numbers 3 1 2 :", "add 1 2"], padding=True, return_tensors="pt")
    return {**enc, "labels": enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)}


def test_forward_inside_the_block_is_doubled_and_noised():
    model = tiny.model()
    recorder = tiny.EmbeddingRecorder(model)
    activate_symnoise(model, alpha=5.0)
    inputs = batch()
    with symnoise_forward(model, inputs, seed=3) as doubled:
        loss = model(**doubled).loss
    plain_loss = model(**inputs).loss
    assert torch.isfinite(loss) and loss.item() != pytest.approx(plain_loss.item(), rel=1e-6)
    inside, outside = recorder.calls
    assert inside["received"].shape[0] == 4 and not torch.equal(inside["received"], inside["raw"])
    assert outside["received"].shape[0] == 2 and torch.equal(outside["received"], outside["raw"])
    assert deactivate_symnoise(model) is True and deactivate_symnoise(model) is False


def test_same_seed_same_noise():
    model = tiny.model()
    recorder = tiny.EmbeddingRecorder(model)
    activate_symnoise(model, alpha=5.0)
    for seed in (3, 3, 4):
        with symnoise_forward(model, batch(), seed=seed) as doubled:
            model(**doubled)
    a, b, c = (call["received"] for call in recorder.calls)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_misuse_raises():
    model = tiny.model()
    with pytest.raises(ValueError, match="not active"):
        with symnoise_forward(model, batch(), seed=0):
            pass
    activate_symnoise(model, alpha=1.0)
    with pytest.raises(ValueError, match="already active"):
        activate_symnoise(model, alpha=1.0)
    with pytest.raises(RuntimeError, match="cannot be nested"):
        with symnoise_forward(model, batch(), seed=0), symnoise_forward(model, batch(), seed=1):
            pass
    with pytest.raises(ValueError, match="seed must be in"):
        with symnoise_forward(model, batch(), seed=-1):
            pass
    deactivate_symnoise(model)
    for kwargs, match in [(dict(alpha=-1.0), "alpha"), (dict(alpha=1.0, length="x"), "length"),
                          (dict(alpha=1.0, backend="x"), "backend")]:  # fmt: skip
        with pytest.raises(ValueError, match=match):
            activate_symnoise(model, **kwargs)


def test_peft_model_hooks_the_base_embeddings():
    model = tiny.model()
    peft_model = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj"]))
    hook = activate_symnoise(peft_model, alpha=2.0)
    assert active_symnoise_hook(peft_model) is hook and active_symnoise_hook(model) is hook
    assert deactivate_symnoise(peft_model)


def test_custom_loop_example_runs():
    losses = runpy.run_path(str(EXAMPLE))["main"](["--steps", "3"])
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses)))


def test_a_deep_copied_model_has_a_hook_of_its_own():
    import copy

    model = tiny.model()
    activate_symnoise(model, alpha=5.0)
    twin = copy.deepcopy(model)  # e.g. a reference or EMA copy made while SymNoise is active
    batch = {"input_ids": torch.tensor([[5, 6, 7, 8]]), "attention_mask": torch.ones(1, 4, dtype=torch.long)}
    with symnoise_forward(model, batch, seed=3) as doubled:
        noisy = model.get_input_embeddings()(doubled["input_ids"])
        twin_out = twin.get_input_embeddings()(doubled["input_ids"])
    assert not torch.equal(noisy, model.get_input_embeddings().weight[doubled["input_ids"]])
    assert torch.equal(twin_out, twin.get_input_embeddings().weight[doubled["input_ids"]])  # not armed by the original
    with symnoise_forward(twin, batch, seed=3) as doubled:  # armed on its own, it draws the same noise
        assert torch.equal(twin.get_input_embeddings()(doubled["input_ids"]), noisy)
    assert deactivate_symnoise(twin) and deactivate_symnoise(model)


def test_triton_is_refused_where_the_embeddings_cannot_run_it_whichever_the_noise(monkeypatch):
    # One rule for every way in (symnoise_trl.hf.support): the trainers refuse the same (trainers/test_trainer.py).
    triton = pytest.importorskip("triton")
    model = tiny.model()
    activate_symnoise(model, alpha=5.0, backend="triton")  # the interpreter runs it on a CPU
    monkeypatch.setattr(triton.knobs.runtime, "interpret", False)  # a CPU without Triton's interpreter
    refused = "`symnoise_backend='triton'` needs a CUDA device .* this run trains on cpu"
    with pytest.raises(ValueError, match=refused):  # checked again for each block: the model may have moved
        with symnoise_forward(model, batch(), seed=0):
            pass
    deactivate_symnoise(model)
    for distribution in ("symmetric", "uniform"):  # also a noise that does not use the op: nothing is ignored
        with pytest.raises(ValueError, match=refused):
            activate_symnoise(model, alpha=5.0, backend="triton", distribution=distribution)


def test_placeholder_ids_come_from_the_config_fields_of_vision_language_models():
    class Multimodal(torch.nn.Module):  # the config fields of LLaVA-style (`*_index`) and Qwen-style (`*_id`) models
        config = SimpleNamespace(image_token_index=7, video_token_id=9, audio_token_id=None, vocab_size=20)

        def get_input_embeddings(self):
            return torch.nn.Embedding(20, 4)

    assert placeholder_token_ids(Multimodal()) == (7, 9)
    assert placeholder_token_ids(tiny.model()) == ()  # a text model
    assert activate_symnoise(Multimodal(), alpha=1.0).placeholder_ids == (7, 9)
