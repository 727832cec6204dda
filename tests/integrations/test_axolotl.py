"""SymNoisePlugin against a real Axolotl install: `axolotl train` on a tiny local Llama and a local alpaca jsonl,
offline, with a test probe plugin (helpers/axolotl_probe.py) recording what the trainer saw. Runs where Axolotl is
installed: `bash scripts/test_axolotl.sh` (in .venv-axolotl; CI runs it); the main suite skips this module.

Each run is `axolotl train config.yml --launcher python` in a subprocess (about 30 s, most of it imports)."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("axolotl", reason="Axolotl is not installed here: bash scripts/test_axolotl.sh runs this module")

import torch  # noqa: E402

from helpers import tiny  # noqa: E402

ROOT = Path(__file__).parents[2]
PLUGIN = "symnoise_trl.integrations.axolotl.SymNoisePlugin"
PROBE = "helpers.axolotl_probe.ProbePlugin"
ALPHA = 5.0
D = 64  # the tiny model's hidden size
PACKING = {"unpacked": dict(sample_packing=False), "packed": dict(sample_packing=True, pad_to_sequence_len=True)}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A tiny Llama with its tokenizer, and 64 alpaca-format examples, in a temporary folder."""
    folder = tmp_path_factory.mktemp("axolotl")
    tiny.model().save_pretrained(folder / "model")
    tiny.tokenizer().save_pretrained(folder / "model")
    data = tiny.prompt_completion_dataset(64)
    with open(folder / "data.jsonl", "w") as f:
        for prompt, completion in zip(data["prompt"], data["completion"], strict=True):
            f.write(json.dumps({"instruction": prompt, "input": "", "output": completion.strip()}) + "\n")
    return folder


def config(workspace: Path, name: str, symnoise: dict | None, **overrides) -> dict:
    """An Axolotl config for the tiny model on the CPU (no flash attention, fp32), with the probe; with SymNoise when
    `symnoise` holds its keys."""
    base = dict(
        base_model=str(workspace / "model"),
        datasets=[{"path": str(workspace / "data.jsonl"), "ds_type": "json", "type": "alpaca"}],
        dataset_prepared_path=str(workspace / "prepared"),
        output_dir=str(workspace / name),
        val_set_size=0,
        sequence_len=512,
        train_on_inputs=False,  # the loss on the responses only
        micro_batch_size=4,
        gradient_accumulation_steps=1,
        max_steps=3,
        learning_rate=1e-3,
        optimizer="adamw_torch",
        lr_scheduler="constant",
        bf16=False,
        fp16=False,
        tf32=False,
        flash_attention=False,
        logging_steps=1,
        save_strategy="no",
        seed=0,
        plugins=([PLUGIN] if symnoise is not None else []) + [PROBE],
    )
    return {**base, **(symnoise or {}), **overrides}


def axolotl_train(cfg: dict, check: bool = True) -> subprocess.CompletedProcess:
    """`axolotl train` on `cfg` (written as JSON, which is YAML), from the repository root: the root's `kernels/`
    folder must not shadow Hugging Face's `kernels` package, which Axolotl imports."""
    path = Path(cfg["output_dir"] + ".yml")
    path.write_text(json.dumps(cfg, indent=1))
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(ROOT / "tests"),
           "HF_HUB_OFFLINE": "1", "AXOLOTL_DO_NOT_TRACK": "1", "WANDB_MODE": "disabled"}  # fmt: skip
    done = subprocess.run([str(bin_dir / "axolotl"), "train", str(path), "--launcher", "python"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)  # fmt: skip
    if check:
        assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return done


def probe(cfg: dict) -> dict:
    return torch.load(Path(cfg["output_dir"]) / "probe.pt", weights_only=False)


def train_logs(record: dict) -> list[dict]:
    return [h for h in record["logs"] if "loss" in h]


def assert_same_training(a: dict, b: dict, rel: float = 1e-5):
    logs_a, logs_b = train_logs(a), train_logs(b)
    assert len(logs_a) == len(logs_b) >= 3
    for x, y in zip(logs_a, logs_b, strict=True):
        assert y["loss"] == pytest.approx(x["loss"], rel=rel)
        assert y["grad_norm"] == pytest.approx(x["grad_norm"], rel=10 * rel)


def assert_doubled_and_noised(record: dict):
    """The first training forward ran on the doubled batch with X +- s*eps, s from each (packed) sequence's length,
    and the logged loss is the mean of the two halves' losses computed by hand."""
    batch, by_hand = record["batches"][0], record["by_hand"]
    first = next(f for f in record["forwards"] if f["training"])
    b = batch["input_ids"].shape[0]
    raw, received = first["raw"], first["received"]
    assert raw.shape[0] == 2 * b and torch.equal(raw[:b], raw[b:])  # the doubled batch's embeddings
    assert record["seeds"][0][1] == by_hand["seed"]
    noise = by_hand["noise"]
    assert noise.abs().sum() > 0
    torch.testing.assert_close(received[:b] - raw[:b], noise, rtol=0, atol=1e-6)
    torch.testing.assert_close(received[b:] - raw[b:], -noise, rtol=0, atol=1e-6)
    first_loss = train_logs(record)[0]["loss"]
    assert first_loss == pytest.approx(sum(by_hand["losses"]) / 2, rel=1e-5)
    assert by_hand["losses"][0] != pytest.approx(by_hand["losses"][1], rel=1e-6)


@pytest.mark.parametrize("packing", list(PACKING))
def test_alpha_zero_trains_as_axolotl_without_the_plugin(workspace, packing):
    overrides = dict(PACKING[packing], gradient_accumulation_steps=2)
    plain = config(workspace, f"plain-{packing}", None, **overrides)
    zero = config(workspace, f"zero-{packing}", {"symnoise_alpha": 0.0}, **overrides)
    axolotl_train(plain)
    axolotl_train(zero)
    assert_same_training(probe(plain), probe(zero))
    # Installed, the plugin is loaded in every run (its entry point) and does nothing while symnoise_alpha is unset.
    assert probe(plain)["trainer_class"] == "AxolotlTrainer" and probe(plain)["seeds"] == []
    assert probe(zero)["trainer_class"] == "SymNoiseAxolotlTrainer"
    seeds = probe(zero)["seeds"]
    assert len(seeds) == len(probe(zero)["batches"]) == len(set(seeds)) > 3  # a seed of its own per micro-batch
    assert any(a[0] == b[0] for a, b in zip(seeds[:-1], seeds[1:], strict=True)), "a step takes two micro-batches"


def test_alpha_5_with_evaluation_and_the_model_card(workspace):
    cfg = config(workspace, "alpha5", {"symnoise_alpha": ALPHA}, val_set_size=0.1, eval_strategy="steps",
                 eval_steps=1, eval_batch_size=4)  # fmt: skip
    axolotl_train(cfg)
    record = probe(cfg)
    assert_doubled_and_noised(record)
    evals = [f for f in record["forwards"] if not f["training"]]
    assert len(evals) >= 3  # an evaluation after each step
    for forward in evals:
        assert forward["raw"].shape[0] <= 4 and torch.equal(forward["received"], forward["raw"])  # no noise
    assert any("eval_loss" in h for h in record["logs"])
    card = (Path(cfg["output_dir"]) / "README.md").read_text()
    front_matter = card.split("---")[1]
    assert "- symnoise" in front_matter  # the Hub tag
    assert "## SymNoise" in card and "journal = {arXiv preprint arXiv:2312.01523}" in card  # settings and citation


def test_sample_packing_gives_each_packed_sequence_its_own_length(workspace):
    cfg = config(workspace, "alpha5-packed", {"symnoise_alpha": ALPHA}, **PACKING["packed"])
    axolotl_train(cfg)
    record = probe(cfg)
    mask = record["batches"][0]["attention_mask"]
    assert mask.max() > 1, "the rows should hold several packed sequences"
    assert_doubled_and_noised(record)
    noise = record["by_hand"]["noise"].abs()[..., 0]
    row = int((mask.max(dim=1).values > 1).nonzero()[0])
    scales = {round(noise[row, mask[row] == v][0].item(), 9) for v in set(mask[row].tolist()) - {0}}
    assert len(scales) > 1  # sequences of different lengths in one row: different scales


def test_symnoise_alpha_alone_turns_symnoise_on(workspace):
    # Without a `plugins:` line: the installed entry point ("axolotl.plugins") loads the plugin.
    cfg = config(workspace, "alpha5-key-only", {"symnoise_alpha": ALPHA}, max_steps=1)
    cfg["plugins"] = [PROBE]
    axolotl_train(cfg)
    record = probe(cfg)
    assert record["trainer_class"] == "SymNoiseAxolotlTrainer" and len(record["seeds"]) == 1
    assert_doubled_and_noised(record)


def test_two_pass_matches_the_doubled_batch(workspace):
    one = config(workspace, "one-pass", {"symnoise_alpha": ALPHA})
    two = config(workspace, "two-pass", {"symnoise_alpha": ALPHA, "symnoise_two_pass": True})
    axolotl_train(one)
    axolotl_train(two)
    assert_same_training(probe(one), probe(two), rel=1e-5)
    forwards = [f for f in probe(two)["forwards"] if f["training"]]
    assert forwards[0]["raw"].shape[0] == probe(two)["batches"][0]["input_ids"].shape[0]  # not doubled


@pytest.mark.parametrize("adapter", ["lora", "qlora"])
def test_lora_and_qlora(workspace, adapter):
    # Axolotl's own LoRA kernels (on by default for LoRA) call CUDA: off on the CPU.
    lora = dict(adapter=adapter, lora_r=4, lora_alpha=8, lora_dropout=0.0, lora_target_linear=True,
                lora_mlp_kernel=False, lora_qkv_kernel=False, lora_o_kernel=False,
                lora_embedding_kernel=False)  # fmt: skip
    if adapter == "qlora":  # 4-bit bitsandbytes on the CPU
        lora |= dict(load_in_4bit=True)
    cfg = config(workspace, f"alpha5-{adapter}", {"symnoise_alpha": ALPHA}, **lora)
    axolotl_train(cfg)
    record = probe(cfg)
    assert_doubled_and_noised(record)
    assert all(math.isfinite(h["loss"]) for h in train_logs(record))
    assert "LoraModel" in record["module_types"]
    assert ("Linear4bit" in record["module_types"]) == (adapter == "qlora")
    assert (Path(cfg["output_dir"]) / "adapter_config.json").exists()


def test_resume_from_a_checkpoint_redraws_the_same_noise(workspace):
    symnoise = {"symnoise_alpha": ALPHA}
    full = config(workspace, "resume-full", symnoise, max_steps=4, save_strategy="steps", save_steps=2)
    axolotl_train(full)
    resumed = config(workspace, "resume-resumed", symnoise, max_steps=4, save_strategy="steps", save_steps=2,
                     resume_from_checkpoint=str(Path(full["output_dir"]) / "checkpoint-2"))  # fmt: skip
    axolotl_train(resumed)
    a, b = probe(full), probe(resumed)
    assert [s for s in a["seeds"] if s[0] >= 2] == b["seeds"] and len(b["seeds"]) == 2
    for x, y in zip(a["batches"][2:], b["batches"], strict=True):  # the same data after the checkpoint
        assert torch.equal(x["input_ids"], y["input_ids"])
    # The resumed run's log history starts with the checkpoint's (steps 1 and 2).
    losses_a, losses_b = [h["loss"] for h in train_logs(a)], [h["loss"] for h in train_logs(b)]
    assert len(losses_a) == len(losses_b) == 4 and losses_b[2:] == pytest.approx(losses_a[2:], rel=1e-5)


@pytest.mark.parametrize(
    "keys, message",
    [
        ({"symnoise_alpha": -1}, "`symnoise_alpha` must be finite and >= 0"),
        ({"symnoise_alpha": 5, "symnoise_length": "tokens"}, "`symnoise_length` must be one of"),
        ({"symnoise_seed": 3}, "`symnoise_seed` set while `symnoise_alpha` is None"),
        ({"symnoise_alpha": 5, "neftune_noise_alpha": 5}, "`neftune_noise_alpha` (5.0) are both set"),
        ({"symnoise_alpha": True}, "symnoise_alpha\n  Input should be a valid number"),  # strict: not 1.0
        ({"symnoise_alpha": 5, "rl": "dpo"}, "`symnoise_alpha` is set with `rl: dpo`"),
    ],
)
def test_a_bad_key_fails_before_the_model_loads(workspace, keys, message):
    cfg = config(workspace, "bad", keys)
    done = axolotl_train(cfg, check=False)
    output = done.stdout + done.stderr
    assert done.returncode != 0 and message in output, output[-3000:]
    assert not Path(cfg["output_dir"]).exists()  # stopped at the config: no model, no output folder
