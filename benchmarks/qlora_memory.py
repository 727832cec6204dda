"""Peak memory of SymNoise QLoRA on a 7B-shaped Llama: the 24 GB single-GPU recipe's claim, measured.

A Llama-2-7B-shaped model (random weights, built from a config: nothing is downloaded) is saved once in bf16 and
loaded in 4-bit NF4 through transformers' bitsandbytes path, then trained by SymNoiseSFTTrainer with LoRA r=16 on all
linear layers, gradient checkpointing, max_length 1024 and 2 sequences per step (4 after SymNoise doubles them).
Peak memory from the first step on: torch.cuda.max_memory_allocated (tensors) and max_memory_reserved (what the
caching allocator held; the CUDA context's few hundred MB come on top of both); the process's peak RSS on a CPU,
where `--size tiny` is a smoke run. Writes benchmarks/results/qlora_memory_<device>.csv and prints a table.

    python benchmarks/qlora_memory.py [--size 7b|tiny] [--steps 3] [--two-pass]
"""

import argparse
import re
import resource
import shutil
import tempfile
import time

import torch

from symnoise_trl.research.report import table

from common import device_name, write_csv

SIZES = {
    "7b": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
               num_key_value_heads=32, vocab_size=32000),
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=1000),
}  # fmt: skip


def saved_model(size: str, folder: str, device: str) -> int:
    """A random Llama of `size` saved in bf16 to `folder`; returns its parameter count."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**SIZES[size], max_position_embeddings=4096, tie_word_embeddings=False, bos_token_id=None,
                         eos_token_id=1, pad_token_id=0, dtype="bfloat16")  # fmt: skip
    torch.manual_seed(0)
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)  # initialised in bf16: 13.5 GB for 7B, not 27 GB of fp32 first
    try:
        with torch.device(device):  # random init on the GPU: seconds, where a CPU takes minutes for 7B
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(default_dtype)
    model.save_pretrained(folder)
    count = sum(p.numel() for p in model.parameters())
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    return count


def measure(size: str, steps: int, max_length: int, batch_size: int, two_pass: bool) -> dict:
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    from symnoise_trl import SymNoiseSFTConfig, SymNoiseSFTTrainer
    from symnoise_trl.quickstart.tiny_model import tiny_model_path

    on_gpu = torch.cuda.is_available()
    folder = tempfile.mkdtemp(prefix=f"qlora_{size}_")
    n_params = saved_model(size, folder, "cuda" if on_gpu else "cpu")
    quantization = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                      bnb_4bit_compute_dtype=torch.bfloat16 if on_gpu else torch.float32)  # fmt: skip
    model = AutoModelForCausalLM.from_pretrained(folder, quantization_config=quantization,
                                                 device_map={"": 0} if on_gpu else "cpu")  # fmt: skip
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path())  # its pad token; the ids below are the model's own
    vocab = SIZES[size]["vocab_size"]
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(2, vocab, (batch_size * (steps + 1), max_length), generator=generator).tolist()
    data = Dataset.from_dict({"input_ids": ids})  # pre-tokenized: every sequence max_length long
    args = SymNoiseSFTConfig(
        output_dir=tempfile.mkdtemp(prefix="qlora_out_"), symnoise_alpha=5.0, symnoise_two_pass=two_pass,
        per_device_train_batch_size=batch_size, max_length=max_length, max_steps=steps, learning_rate=1e-4,
        gradient_checkpointing=True, bf16=on_gpu, use_cpu=not on_gpu, logging_steps=1, report_to="none",
        save_strategy="no", dataloader_pin_memory=False, disable_tqdm=True, seed=0,
    )  # fmt: skip
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = SymNoiseSFTTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer,
                                 peft_config=lora)  # fmt: skip
    if on_gpu:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    trainer.train()
    if on_gpu:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() if on_gpu else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    reserved = torch.cuda.max_memory_reserved() if on_gpu else peak
    shutil.rmtree(folder, ignore_errors=True)  # the 7B checkpoint: 13.5 GB
    shutil.rmtree(args.output_dir, ignore_errors=True)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {
        "model": f"llama-{size} (random)", "params_B": n_params / 1e9, "quantization": "nf4 (double quant)",
        "lora_r": 16, "max_length": max_length, "batch_size": batch_size, "sequences_per_step": 2 * batch_size,
        "two_pass": two_pass, "steps": steps, "s_per_step": seconds / steps, "peak_memory_GB": peak / 1e9,
        "peak_reserved_GB": reserved / 1e9,
        "final_loss": losses[-1],
    }  # fmt: skip


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="7b")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--two-pass", action="store_true", help="symnoise_two_pass=True (one copy at a time)")
    args = parser.parse_args(argv)
    row = measure(args.size, args.steps, args.max_length, args.batch_size, args.two_pass)
    row["device"] = device_name()
    slug = re.sub(r"[^a-z0-9]+", "_", row["device"].lower()).strip("_")[:40]
    path = write_csv(f"qlora_memory_{slug}{'' if args.size == '7b' else '_' + args.size}.csv", [row])
    print(f"\nDevice: {row['device']}. CSV: {path.name}")
    print(table([row], list(row)))
    return row


if __name__ == "__main__":
    main()
