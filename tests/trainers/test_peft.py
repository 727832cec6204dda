"""LoRA and QLoRA (bitsandbytes nf4 on CPU), with gradient checkpointing: SymNoise trains the adapters only."""

import pytest
import torch
from peft import LoraConfig
from transformers import AutoModelForCausalLM, BitsAndBytesConfig

from symnoise_trl import SymNoiseSFTConfig, SymNoiseSFTTrainer

from helpers import tiny

# Also run at the lowest versions pyproject.toml allows (scripts/test_floors.sh).
pytestmark = pytest.mark.floors

LORA = dict(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0)


def quantized_tiny_model(tmp_path):
    tiny.model().save_pretrained(tmp_path / "tiny")
    quantization = BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32
    )
    return AutoModelForCausalLM.from_pretrained(tmp_path / "tiny", quantization_config=quantization, device_map="cpu")


@pytest.mark.parametrize("quantized", [False, True], ids=["lora", "qlora"])
def test_adapters_train_with_symnoise_and_checkpointing(tmp_path, quantized):
    model = quantized_tiny_model(tmp_path) if quantized else tiny.model()
    assert any(type(m).__name__ == "Linear4bit" for m in model.modules()) == quantized
    recorder = tiny.EmbeddingRecorder(model)
    args = tiny.train_args(SymNoiseSFTConfig, tmp_path / "out", symnoise_alpha=5.0, gradient_checkpointing=True)
    trainer = SymNoiseSFTTrainer(
        model=model,
        args=args,
        train_dataset=tiny.prompt_completion_dataset(),
        processing_class=tiny.tokenizer(),
        peft_config=LoraConfig(**LORA),
    )
    before = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
    trainer.train()

    assert trainer.model.is_gradient_checkpointing
    trainable = {name for name, p in trainer.model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in name for name in trainable)
    for name, p in trainer.model.named_parameters():
        changed = not torch.equal(p.detach(), before[name])
        assert changed == (name in trainable), name
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses)))
    noised = [c for c in recorder.calls if c["training"]]
    assert len(noised) >= 3
    for call in noised:
        b = call["raw"].shape[0] // 2
        assert not torch.equal(call["received"], call["raw"])
        torch.testing.assert_close(
            (call["received"][:b] + call["received"][b:]) / 2, call["raw"][:b], rtol=0, atol=1e-6
        )
