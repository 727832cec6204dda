"""Training-step cost of SymNoise against plain SFT and NEFTune: step time, real tokens/s, peak memory.

Modes, each on the same data with the same real tokens per step (per_device_train_batch_size sequences):
  sft                plain SFTTrainer
  neftune            SFTTrainer with neftune_noise_alpha=5
  symnoise           SymNoiseSFTTrainer, symnoise_alpha=5 (one pass over the doubled batch)
  symnoise_two_pass  the same with symnoise_two_pass=True (two passes of the original batch)
Models: the quickstart's tiny model, and a ~114M-parameter Llama config with the same tokenizer (random weights).
Each (model, mode) runs in a fresh process, so peak memory is its own: CPU, the process's peak RSS; GPU,
torch.cuda.max_memory_allocated. `activation_MB` is the largest total of tensors one forward saves for its
backward (parameters excluded), counted with autograd's saved-tensor hooks: the activation memory, the same on any
device. Gradient checkpointing is off, so all of it shows.
Writes benchmarks/results/train_step_<device>.csv and prints a table.

    python benchmarks/train_step.py [--steps 6] [--batch-size 16] [--models tiny,100m]
"""

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile

import torch

from symnoise_trl.research.report import table

from common import device_name, device_slug, step_timer, write_csv

MODES = ("sft", "neftune", "symnoise", "symnoise_two_pass")
WARMUP_STEPS = 2


def build_model(size: str):
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from symnoise_trl.quickstart.tiny_model import tiny_model_path

    path = tiny_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    if size == "tiny":
        return AutoModelForCausalLM.from_pretrained(path), tokenizer
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                         num_attention_heads=12, num_key_value_heads=12, max_position_embeddings=512,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=None,
                         tie_word_embeddings=True)  # fmt: skip
    torch.manual_seed(0)
    return LlamaForCausalLM(config), tokenizer


def worker(mode: str, size: str, steps: int, batch_size: int) -> dict:
    from datasets import load_dataset
    from trl import SFTConfig, SFTTrainer

    from symnoise_trl import SymNoiseSFTConfig, SymNoiseSFTTrainer
    from symnoise_trl.quickstart.tasks import DATA_DIR

    on_gpu = torch.cuda.is_available()

    times = []
    model, tokenizer = build_model(size)
    common = dict(
        output_dir=tempfile.mkdtemp(prefix=f"train_step_{mode}_"), per_device_train_batch_size=batch_size,
        max_steps=steps, learning_rate=1e-4, logging_steps=1, report_to="none", save_strategy="no", max_length=64,
        gradient_checkpointing=False, bf16=on_gpu, dataloader_pin_memory=False, disable_tqdm=True, seed=0,
    )  # fmt: skip
    if mode in ("sft", "neftune"):
        args = SFTConfig(**common, neftune_noise_alpha=5.0 if mode == "neftune" else None)
        trainer_cls = SFTTrainer
    else:
        args = SymNoiseSFTConfig(**common, symnoise_alpha=5.0, symnoise_two_pass=mode == "symnoise_two_pass")
        trainer_cls = SymNoiseSFTTrainer
    data = load_dataset(str(DATA_DIR), split="train")
    timer = step_timer(times)
    trainer = trainer_cls(model=model, args=args, train_dataset=data, processing_class=tokenizer, callbacks=[timer])
    activations = SavedActivations(trainer.model)
    if on_gpu:
        torch.cuda.reset_peak_memory_stats()
    with torch.autograd.graph.saved_tensors_hooks(activations.pack, lambda tensor: tensor):
        trainer.train()
    tokens = [h["num_tokens"] for h in trainer.state.log_history if "num_tokens" in h]
    measured = times[WARMUP_STEPS:]
    real_tokens = tokens[-1] - tokens[WARMUP_STEPS - 1]
    peak = torch.cuda.max_memory_allocated() if on_gpu else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "model": size,
        "params_M": sum(p.numel() for p in model.parameters()) / 1e6,
        "mode": mode,
        "batch_size": batch_size,
        "step_ms": 1e3 * statistics.median(measured),
        "real_tokens_per_s": real_tokens / sum(measured),
        "peak_memory_MB": peak / 2**20,
        "activation_MB": activations.peak / 2**20,
    }


class SavedActivations:
    """Bytes of the tensors each forward of `model` saves for backward, parameters excluded; keeps the largest."""

    def __init__(self, model):
        self.parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
        self.storages, self.peak = set(), 0
        model.register_forward_pre_hook(lambda *args: self.storages.clear())
        model.register_forward_hook(lambda *args: self._end_of_forward())

    def pack(self, tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in self.parameters:
            self.storages.add((storage.data_ptr(), storage.nbytes()))
        return tensor

    def _end_of_forward(self):
        self.peak = max(self.peak, sum(nbytes for _, nbytes in self.storages))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6, help=f"steps per run, the first {WARMUP_STEPS} untimed")
    parser.add_argument("--batch-size", type=int, default=16, help="sequences per step (per device)")
    parser.add_argument("--models", default="tiny,100m", help="comma-separated: tiny, 100m")
    parser.add_argument("--worker", nargs=2, metavar=("MODE", "MODEL"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(*args.worker, args.steps, args.batch_size)))
        return None

    rows = []
    for size in args.models.split(","):
        for mode in MODES:
            command = [sys.executable, __file__, "--worker", mode, size, "--steps", str(args.steps),
                       "--batch-size", str(args.batch_size)]  # fmt: skip
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise SystemExit(f"{mode} on {size} failed:\n{done.stderr[-3000:]}")
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"measured {mode} on {size}", flush=True)
    name = device_name()
    for size in {r["model"] for r in rows}:
        sft = next(r for r in rows if (r["model"], r["mode"]) == (size, "sft"))
        for r in rows:
            if r["model"] == size:
                r["time_vs_sft"] = r["step_ms"] / sft["step_ms"]
                r["memory_vs_sft"] = r["peak_memory_MB"] / sft["peak_memory_MB"]
                r["activations_vs_sft"] = r["activation_MB"] / sft["activation_MB"]
    for r in rows:
        r["device"] = name
    path = write_csv(f"train_step_{device_slug(name)}.csv", rows)
    print(f"\nDevice: {name}. CSV: {path.name}")
    print(table(rows, ["model", "params_M", "mode", "batch_size", "step_ms", "real_tokens_per_s", "peak_memory_MB",
                       "activation_MB", "time_vs_sft", "memory_vs_sft", "activations_vs_sft"]))  # fmt: skip
    return rows


if __name__ == "__main__":
    main()
