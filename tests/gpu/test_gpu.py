"""On a CUDA GPU: the compiled Triton kernel bit for bit against the torch reference (CPU and GPU), autograd,
torch.compile with Inductor, no host syncs, and SymNoise training in bf16, LoRA and QLoRA.

Selected with `pytest -m gpu` (scripts/gpu_check.sh runs them); Triton then runs compiled, not interpreted (see
conftest.py). Elsewhere they skip. SYMNOISE_TEST_DEVICE=cpu runs the same checks on CPU tensors through the
interpreter (slow): a way to check the tests themselves on a machine without a GPU.
"""

import copy
import math
import os

import pytest
import torch
from peft import LoraConfig
from transformers import AutoModelForCausalLM, BitsAndBytesConfig

from symnoise_trl import SymNoiseSFTConfig
from symnoise_trl.kernels import symnoise
from symnoise_trl.kernels.reference import symnoise_reference
from symnoise_trl.kernels.symnoise_op import _triton_interpreting, symnoise_unchecked, triton_runs_on
from symnoise_trl.noise import hook
from symnoise_trl.noise.plan import NoisePlan, noise_scale

from helpers import tiny
from helpers.kernel_cases import DTYPES, SEED, assert_bit_equal, matrix_inputs, row_scales

pytest.importorskip("triton")  # a CPU-only torch brings none (the dev extra installs it)
from symnoise_trl.kernels.symnoise_triton import symnoise_triton  # noqa: E402

DEVICE = torch.device(os.environ.get("SYMNOISE_TEST_DEVICE", "cuda"))
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        (DEVICE.type == "cuda" and not torch.cuda.is_available()) or not triton_runs_on(DEVICE),
        reason="needs a CUDA GPU with Triton: run `bash scripts/gpu_check.sh` there (or `pytest -m gpu`)",
    ),
    pytest.mark.skipif(
        DEVICE.type == "cuda" and _triton_interpreting(),
        reason="this run interprets Triton; `pytest -m gpu` runs the compiled kernel (see conftest.py)",
    ),
]
ON_GPU = DEVICE.type == "cuda" and torch.cuda.is_available()


# The kernel: compiled on CUDA tensors, against the reference on the CPU and the torch backend on the GPU.


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("half", ["both", "plus", "minus"])
@pytest.mark.parametrize("per_row", [False, True], ids=["scalar_scale", "row_scale"])
def test_compiled_kernel_equals_the_reference_on_cpu_and_gpu(dtype, half, per_row):
    for x in matrix_inputs(dtype):
        n_rows = x.shape[0]
        rows = row_scales(n_rows) if per_row else torch.full((n_rows,), 0.37)
        scale = rows.to(DEVICE) if per_row else 0.37
        got = symnoise(x.to(DEVICE), scale, SEED, half=half, backend="triton")
        on_gpu = symnoise(x.to(DEVICE), scale, SEED, half=half, backend="torch")
        assert got.device == DEVICE
        assert_bit_equal(got.cpu(), symnoise_reference(x, rows, SEED, half))
        assert_bit_equal(got.cpu(), on_gpu.cpu())


@pytest.mark.parametrize("config", [(1, 1, 1), (16, 2, 4)])
def test_compiled_kernel_output_does_not_depend_on_block_config(config):
    x = torch.randn(37, 700, dtype=torch.bfloat16)
    scale = row_scales(37)
    got = symnoise_triton(x.to(DEVICE), scale.to(DEVICE), 0.0, SEED, "both", config=config)
    assert_bit_equal(got.cpu(), symnoise_reference(x, scale, SEED, "both"))


def test_compiled_kernel_non_contiguous_input():
    x = torch.randn(4, 9, 2 * 96, dtype=torch.bfloat16, device=DEVICE)[..., ::2]
    assert not x.is_contiguous()
    scale = torch.rand(4, 9, device=DEVICE)
    got = symnoise(x, scale, 3, backend="triton")
    want = symnoise_reference(x.cpu().contiguous().reshape(-1, 96), scale.cpu().reshape(-1), 3, "both")
    assert_bit_equal(got.cpu(), want.reshape(2, 4, 9, 96))


@pytest.mark.skipif(not ON_GPU or torch.cuda.get_device_properties(DEVICE).total_memory < 40e9, reason="needs 40 GB")
def test_compiled_kernel_past_2_31_elements_per_half():
    # bf16, 2**31 + 2 * 4096 elements per half: offsets within one half pass 2**31 - 1. Rows at both ends and across
    # the 2**31 boundary are compared with the reference (a row's signs depend on its index only).
    dim = 4096
    n_rows = 2**31 // dim + 2
    x = torch.empty(n_rows, dim, dtype=torch.bfloat16, device=DEVICE).normal_()
    out = symnoise(x, 0.01, SEED, backend="triton")
    boundary = 2**31 // dim
    for start in (0, boundary - 1, n_rows - 2):
        rows = slice(start, start + 2)
        sub = x[rows].cpu()
        want = symnoise_reference(sub, torch.full((2,), 0.01), SEED, "both", first_row=start)
        assert_bit_equal(out[:, rows].cpu(), want)
    del out, x
    torch.cuda.empty_cache()


def test_autograd_on_gpu():
    x = torch.randn(3, 5, 200, device=DEVICE, requires_grad=True)
    weights = torch.randn(2, 3, 5, 200, device=DEVICE)
    (symnoise(x, 0.25, 42, backend="triton") * weights).sum().backward()
    assert torch.equal(x.grad, weights[0] + weights[1])


def test_torch_compile_fullgraph_with_inductor_on_gpu():
    def noisy_sum(x, scale, seed):
        y = symnoise(x * 2, scale, seed, check_scale=False)
        return (y[0] * y[1]).sum(-1)

    x = torch.randn(2, 6, 160, device=DEVICE, requires_grad=True)
    scale = torch.rand(2, 6, device=DEVICE)
    compiled = torch.compile(noisy_sum, fullgraph=True, backend="inductor" if ON_GPU else "eager")

    def check(seed):
        eager_out = noisy_sum(x, scale, torch.tensor(seed))
        (eager_grad,) = torch.autograd.grad(eager_out.sum(), x)
        compiled_out = compiled(x, scale, torch.tensor(seed))
        (compiled_grad,) = torch.autograd.grad(compiled_out.sum(), x)
        torch.testing.assert_close(compiled_out, eager_out)
        torch.testing.assert_close(compiled_grad, eager_grad)

    check(1234)
    with torch._dynamo.config.patch(error_on_recompile=True):  # a seed tensor: a new value runs the same graph
        check(99)


@pytest.mark.skipif(not ON_GPU, reason="needs CUDA: torch.cuda.set_sync_debug_mode")
def test_training_path_op_call_does_not_sync():
    x = torch.randn(8, 64, 576, dtype=torch.bfloat16, device=DEVICE)
    lengths = torch.randint(0, 64, (8, 64), device=DEVICE).float()
    scale = noise_scale(lengths, 5.0, 576)
    seed = torch.tensor(SEED)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for backend in ("triton", "torch"):  # the torch backend too: its fix-ups read nothing back on a GPU
            symnoise_unchecked(x, scale, seed, "both", backend)
            symnoise_unchecked(x, -scale, seed, "plus", backend)
    finally:
        torch.cuda.set_sync_debug_mode("default")


# Training on the GPU: one step each, checked against the reference op and a hand-computed loss.


def failing_on_sync(fn):
    """`fn` with CUDA told to raise on any device -> host synchronisation while it runs."""

    def wrapped(*args, **kwargs):
        torch.cuda.set_sync_debug_mode("error")
        try:
            return fn(*args, **kwargs)
        finally:
            torch.cuda.set_sync_debug_mode("default")

    return wrapped


def reference_model(model):
    return copy.deepcopy(model)  # before the trainer patches the forward: the plain HF model and loss


def train_one_step(tmp_path, model, layout="padded", peft_config=None, **overrides):
    recorder = tiny.EmbeddingRecorder(model)
    settings = dict(symnoise_alpha=5.0, symnoise_backend="triton", max_steps=1, use_cpu=not ON_GPU, bf16=ON_GPU)
    if layout == "packed":
        settings.update(padding_free=True, max_length=None)
    args = tiny.train_args(SymNoiseSFTConfig, tmp_path / "out", **{**settings, **overrides})
    trainer = tiny.BatchRecordingTrainer(model=model, args=args, train_dataset=tiny.prompt_completion_dataset(),
                                         processing_class=tiny.tokenizer(), peft_config=peft_config)  # fmt: skip
    trainer.seeds = tiny.record_seeds(trainer)
    trainer.train()
    return trainer, [c for c in recorder.calls if c["training"]][0]


def check_step(trainer, call, reference, layout):
    """Doubling, the exact symmetric noise (the reference op on the CPU with the step's seed), and the logged loss
    against the plain model's loss on each half."""
    batch = trainer.batches[0]
    (_, seed), d = trainer.seeds[0], call["raw"].shape[-1]
    if layout == "padded":
        b = batch["input_ids"].shape[0]
        mask = batch["attention_mask"]
        assert call["received"].shape[0] == 2 * b
        assert torch.equal(call["ids"], torch.cat([batch["input_ids"]] * 2))
        clean, halves = call["raw"][:b], (call["received"][:b], call["received"][b:])
        lengths = mask.sum(1, keepdim=True).float() * mask.float()
    else:
        t = batch["input_ids"].shape[1]
        assert call["received"].shape[1] == 2 * t
        clean, halves = call["raw"][:, :t], (call["received"][:, :t], call["received"][:, t:])
        if "cu_seq_lens_q" in batch:
            cu = batch["cu_seq_lens_q"].long().cpu()
        else:  # older TRL collators: sequences start where position_ids restart at 0
            cu = torch.cat([(batch["position_ids"][0].cpu() == 0).nonzero().flatten(), torch.tensor([t])])
        lengths = torch.repeat_interleave(cu.diff(), cu.diff()).float()[None]
    scale = (5.0 / torch.sqrt(3.0 * lengths.cpu().double() * d)).where(lengths.cpu() > 0, 0.0).float()
    want = symnoise_reference(clean.cpu().reshape(-1, d), scale.reshape(-1), seed, "both")
    assert_bit_equal(torch.stack(halves).cpu().reshape(2, -1, d), want)
    extra = {k: v for k, v in batch.items() if k not in ("input_ids", "labels")}
    with torch.no_grad():
        losses = [reference(inputs_embeds=h, labels=batch["labels"], **extra).loss.float().item() for h in halves]
    logged = [h for h in trainer.state.log_history if "loss" in h][0]["loss"]
    assert logged == pytest.approx(sum(losses) / 2, rel=2e-2 if ON_GPU else 1e-4)
    assert losses[0] != losses[1]


@pytest.mark.parametrize("layout", ["padded", "packed"])
def test_bf16_full_fine_tuning_with_the_triton_backend(tmp_path, layout):
    model = tiny.model(attn_implementation="sdpa" if layout == "padded" else "varlen_reference")
    model = model.to(DEVICE, torch.bfloat16 if ON_GPU else torch.float32)
    reference = reference_model(model)
    trainer, call = train_one_step(tmp_path, model, layout)
    check_step(trainer, call, reference, layout)
    assert call["raw"].device.type == DEVICE.type


@pytest.mark.skipif(not ON_GPU, reason="needs CUDA: torch.cuda.set_sync_debug_mode")
@pytest.mark.parametrize("layout", ["padded", "packed"])
def test_training_step_adds_no_device_sync(tmp_path, layout, monkeypatch):
    # Everything SymNoise adds to a step - token lengths, the doubled batch, the scale and the kernel launch inside
    # the forward - runs with syncs made errors (plain SFT's own logging syncs, so the whole step cannot).
    monkeypatch.setattr(hook, "token_lengths", failing_on_sync(hook.token_lengths))  # as noise/hook.py imports them
    monkeypatch.setattr(hook, "double_batch", failing_on_sync(hook.double_batch))
    monkeypatch.setattr(NoisePlan, "apply", failing_on_sync(NoisePlan.apply))
    model = tiny.model(attn_implementation="sdpa" if layout == "padded" else "varlen_reference").to(DEVICE)
    trainer, call = train_one_step(tmp_path, model, layout, max_steps=2)
    assert len(trainer.seeds) == 2 and call["received"].shape[0 if layout == "padded" else 1] > 0


@pytest.mark.parametrize("quantized", [False, True], ids=["lora", "qlora"])
def test_lora_and_qlora(tmp_path, quantized):
    tiny.model().save_pretrained(tmp_path / "tiny")
    kwargs = {"device_map": {"": DEVICE.index or 0} if ON_GPU else "cpu"}
    if quantized:
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=torch.bfloat16 if ON_GPU else torch.float32,
        )  # fmt: skip
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "tiny", **kwargs)
    reference = AutoModelForCausalLM.from_pretrained(tmp_path / "tiny", **kwargs)  # LoRA starts as the identity
    assert any(type(m).__name__ == "Linear4bit" for m in model.modules()) == quantized
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0)
    trainer, call = train_one_step(tmp_path, model, peft_config=lora, gradient_checkpointing=True)
    check_step(trainer, call, reference, "padded")
    trainable = [name for name, p in trainer.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)
    assert math.isfinite([h for h in trainer.state.log_history if "loss" in h][0]["grad_norm"])
