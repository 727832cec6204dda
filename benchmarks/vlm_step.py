"""What a SymNoise step costs a vision-language model, and how much of it is the vision tower.

Both SymNoise modes run the vision tower on every image twice, as the language model on every token: the doubled
batch gives the images twice on dim 0, the two-pass mode runs the original batch twice. This measures, on one
training batch per model (forward and backward, median of `--repeats` after one warm-up):
  sft        the original batch (plain SFT's step)
  symnoise   the doubled batch (`symnoise_forward`, the one-pass mode)
  two_pass   the batch twice, `half="plus"` then `half="minus"`, each loss weighted 1/2
  vision     the vision tower and projector alone (`get_image_features`, forward and backward) on the doubled batch's
             images: the part of a symnoise step that computing the image features once would halve
Models: the ten tiny families of the tests (tests/helpers/tiny_vlm.py, about 0.15M parameters, 16-32 px images) on
4 rows of their conversational image data, and a ~100M-shaped Qwen2-VL from a config (random weights): an 8-layer
768-wide language model (57M parameters) and a 6-layer 768-wide vision tower with its merger (55M), 224 x 224 images
(256 patches of 14 px, 64 placeholder tokens each), 4 rows.
Writes benchmarks/results/vlm_step_<device>.csv and prints a table.

    python benchmarks/vlm_step.py [--repeats 5] [--models tiny,100m]
"""

import argparse
import random
import re
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from symnoise_trl import activate_symnoise, symnoise_forward
from symnoise_trl.research.report import table

from common import device_name, device_slug, write_csv

# The tiny families and their processors are the tests' (built in code, nothing downloaded).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

IMAGE_KEYS = ("pixel_values", "image_sizes", "image_grid_thw", "pixel_attention_mask", "image_position_ids")
VISION_PARAMETERS = re.compile(r"visual|vision|multi_modal_projector|connector")


def tiny_case(family: str):
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    from helpers import tiny_vlm

    processor = tiny_vlm.processor(family)
    rows = list(tiny_vlm.conversational_dataset(4))
    return tiny_vlm.model(family), DataCollatorForVisionLanguageModeling(processor)(rows)


def qwen2_vl_100m():
    """A ~100M-shaped Qwen2-VL: the tests' tokenizer, an 8-layer 768-wide language model, a 6-layer 768-wide vision
    tower."""
    from PIL import Image
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLImageProcessorPil
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    from helpers import tiny_vlm

    tokenizer = tiny_vlm.processor("qwen2_vl").tokenizer
    ids = tokenizer.convert_tokens_to_ids
    pixels = 224 * 224  # Qwen2-VL sizes images by their pixel count
    image_processor = Qwen2VLImageProcessorPil(patch_size=14, merge_size=2, temporal_patch_size=2,
                                               size={"shortest_edge": pixels, "longest_edge": pixels})  # fmt: skip
    template = tiny_vlm.processor("qwen2_vl").chat_template
    processor = tiny_vlm.ImageOnlyQwen2VLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                                   chat_template=template)  # fmt: skip
    text = dict(vocab_size=len(tokenizer), hidden_size=768, intermediate_size=2048, num_hidden_layers=8,
                num_attention_heads=12, num_key_value_heads=12, pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id, bos_token_id=None)  # fmt: skip
    text["rope_parameters"] = {"rope_type": "default", "mrope_section": [8, 12, 12], "rope_theta": 10000.0}
    vision = dict(depth=6, embed_dim=768, hidden_size=768, num_heads=12, mlp_ratio=4, patch_size=14,
                  spatial_merge_size=2, temporal_patch_size=2, in_chans=3)  # fmt: skip
    config = Qwen2VLConfig(text_config=text, vision_config=vision, image_token_id=ids("<|image_pad|>"),
                           video_token_id=ids("<|video_pad|>"), vision_start_token_id=ids("<|vision_start|>"),
                           vision_end_token_id=ids("<|vision_end|>"))  # fmt: skip
    torch.manual_seed(0)
    model = Qwen2VLForConditionalGeneration(config)
    rows = list(tiny_vlm.conversational_dataset(4))
    rng = np.random.default_rng(0)
    for row in rows:  # ViT-sized images in place of the tests' 16-32 px ones
        row["images"] = [Image.fromarray(rng.integers(0, 256, (224, 224, 3), dtype=np.uint8))]
    return model, DataCollatorForVisionLanguageModeling(processor)(rows)


def tensors(output) -> list[torch.Tensor]:
    """Every tensor in a get_image_features output (a tensor, a tuple or list, or a ModelOutput)."""
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, dict):  # ModelOutput: the projected features where there are, else the tower's output
        pooled = output.get("pooler_output")
        output = [pooled] if pooled is not None else list(output.values())
    return [t for item in output if item is not None for t in tensors(item)]


def n_images(batch: dict) -> int:
    """The images of a batch: one per grid, size or position row where the processor gives them (Qwen's
    pixel_values are patches), else one per pixel_values entry (Idefics3's are per example: its rows, one image
    each here)."""
    for key in ("image_grid_thw", "image_sizes", "image_position_ids", "pixel_values"):
        if key in batch:
            return len(batch[key])
    return 0


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def measure(name: str, model, batch: dict, repeats: int) -> dict:
    model.train()
    activate_symnoise(model, alpha=5.0)
    seed = random.Random(0).randrange(2**31)

    def sft():
        model(**batch).loss.backward()
        model.zero_grad(set_to_none=True)

    def doubled():
        with symnoise_forward(model, batch, seed=seed) as both:
            model(**both).loss.backward()
        model.zero_grad(set_to_none=True)

    def two_pass():
        for half in ("plus", "minus"):
            with symnoise_forward(model, batch, seed=seed, half=half) as one:
                (model(**one).loss / 2).backward()
        model.zero_grad(set_to_none=True)

    images = {k: torch.cat([batch[k], batch[k]]) for k in IMAGE_KEYS if k in batch}

    def vision():
        features = tensors(model.get_image_features(**images))
        sum(f.float().sum() for f in features if f.requires_grad).backward()
        model.zero_grad(set_to_none=True)

    times = {mode: timed(fn, repeats) for mode, fn in (("sft", sft), ("symnoise", doubled), ("two_pass", two_pass),
                                                       ("vision", vision))}  # fmt: skip
    parameters = sum(p.numel() for p in model.parameters())
    vision_parameters = sum(p.numel() for n, p in model.named_parameters() if VISION_PARAMETERS.search(n))
    return {
        "model": name,
        "parameters_M": round(parameters / 1e6, 2),
        "vision_parameters_M": round(vision_parameters / 1e6, 2),
        "rows": batch["input_ids"].shape[0],
        "tokens": batch["input_ids"].shape[1],
        "images": n_images(batch),
        "sft_ms": round(times["sft"], 1),
        "symnoise_ms": round(times["symnoise"], 1),
        "two_pass_ms": round(times["two_pass"], 1),
        "vision_ms": round(times["vision"], 1),
        "symnoise_vs_sft": round(times["symnoise"] / times["sft"], 2),
        "two_pass_vs_sft": round(times["two_pass"] / times["sft"], 2),
        "vision_share": round(times["vision"] / times["symnoise"], 3),
        # A symnoise step whose image features were computed once and given to both copies.
        "shared_vision_vs_sft": round((times["symnoise"] - times["vision"] / 2) / times["sft"], 2),
    }


def main():
    from helpers import tiny_vlm

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--models", default="tiny,100m", help="comma-separated: tiny (the ten families), 100m")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    models = args.models.split(",")
    unknown = sorted(set(models) - {"tiny", "100m"})
    if unknown:
        parser.error(f"--models takes tiny and 100m, got {unknown}")
    rows = []
    for family in tiny_vlm.FAMILIES if "tiny" in models else ():
        rows.append(measure(family, *tiny_case(family), args.repeats))
        print(rows[-1], flush=True)
    if "100m" in models:
        rows.append(measure("qwen2_vl_100m", *qwen2_vl_100m(), args.repeats))
        print(rows[-1], flush=True)
    device = device_name()
    path = write_csv(f"vlm_step_{device_slug(device)}.csv", rows)
    print(f"{device}, torch {torch.__version__}\n")
    print(table(rows, list(rows[0])))
    print(f"\nwritten to {path}")


if __name__ == "__main__":
    main()
