"""Tiny vision-language models with their processors, and image+text data sets, built in code (nothing is downloaded).

Four families that batch their vision inputs differently:
- "llava": `pixel_values` (n_images, C, H, W), one `<image>` expanded to a fixed 16 placeholders (a CLIP tower).
- "qwen2_vl": `pixel_values` as flattened patches (n_patches, C*T*P*P) with `image_grid_thw` (n_images, 3); the
  number of placeholders follows the image's size, and `mm_token_type_ids` marks them.
- "idefics3": `pixel_values` (B, max_images, C, H, W) per example, padded, with `pixel_attention_mask`.
- "gemma3": `pixel_values` per image with `token_type_ids` marking the placeholders (TRL's Gemma special case), and
  token embeddings scaled by sqrt(d) inside the embedding module (a SigLIP tower).
Each processor is the family's own transformers class over a copy of the tests' BPE tokenizer, with the family's
special tokens added and a chat template that renders TRL's multimodal messages.
"""

import copy
import functools
import random

import numpy as np
import torch
from datasets import Dataset
from PIL import Image
from transformers import (
    CLIPImageProcessorPil,
    CLIPVisionConfig,
    Gemma3Config,
    Gemma3ForConditionalGeneration,
    Gemma3ImageProcessorPil,
    Gemma3Processor,
    Idefics3Config,
    Idefics3ForConditionalGeneration,
    Idefics3ImageProcessorPil,
    Idefics3Processor,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
    Qwen2VLImageProcessorPil,
    Qwen2VLProcessor,
)

from helpers import tiny

FAMILIES = ("llava", "qwen2_vl", "idefics3", "gemma3")
TEXT = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
D = TEXT["hidden_size"]
GEMMA3_TOKENS = {"boi_token": "<start_of_image>", "image_token": "<image_soft_token>", "eoi_token": "<end_of_image>"}


def chat_template(image: str) -> str:
    """Renders string or list content ({"type": "image"} as `image`, {"type": "text"} as its text)."""
    return (
        "{% for message in messages %}{{ '<' + message['role'] + '> ' }}"
        "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
        "{% for item in message['content'] %}{% if item['type'] == 'image' %}{{ '" + image + "' }}"
        "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}{% endif %}"
        "{% if message['role'] == 'assistant' %}{{ eos_token }}{% endif %}{{ '\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<assistant> ' }}{% endif %}"
    )


def _tokenizer(special_tokens: list[str]):
    tokenizer = copy.deepcopy(tiny.tokenizer())
    tokenizer.add_special_tokens({"additional_special_tokens": special_tokens})
    return tokenizer


class ImageOnlyQwen2VLProcessor(Qwen2VLProcessor):
    """Qwen2VLProcessor without its video processor: transformers' video processors need torchvision, and the
    torchvision wheels for torch 2.13 on the package index are CUDA builds that fail to import with the CPU torch.
    Images are processed by Qwen2VLProcessor's own code."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(image_processor, tokenizer, None, chat_template=chat_template)


@functools.lru_cache
def processor(family: str):
    if family == "llava":
        tokenizer = _tokenizer(["<image>"])
        return LlavaProcessor(
            image_processor=CLIPImageProcessorPil(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16}),
            tokenizer=tokenizer,
            patch_size=4,
            vision_feature_select_strategy="default",
            num_additional_image_tokens=1,
            chat_template=chat_template("<image>"),
            image_token="<image>",
        )
    if family == "qwen2_vl":
        tokenizer = _tokenizer(["<|vision_start|>", "<|image_pad|>", "<|vision_end|>", "<|video_pad|>"])
        image_processor = Qwen2VLImageProcessorPil(
            patch_size=4, merge_size=2, temporal_patch_size=2, size={"shortest_edge": 64, "longest_edge": 1024}
        )
        return ImageOnlyQwen2VLProcessor(
            image_processor=image_processor,
            tokenizer=tokenizer,
            chat_template=chat_template("<|vision_start|><|image_pad|><|vision_end|>"),
        )
    if family == "idefics3":
        tokenizer = _tokenizer(["<fake_token_around_image>", "<image>", "<end_of_utterance>", "<global-img>"])
        image_processor = Idefics3ImageProcessorPil(
            do_image_splitting=False, size={"longest_edge": 16}, max_image_size={"longest_edge": 16}
        )
        return Idefics3Processor(
            image_processor=image_processor,
            tokenizer=tokenizer,
            image_seq_len=4,
            chat_template=chat_template("<image>"),
        )
    if family == "gemma3":
        tokenizer = _tokenizer(list(GEMMA3_TOKENS.values()))
        for name, token in GEMMA3_TOKENS.items():  # what Gemma's own tokenizer exposes, and Gemma3Processor reads
            setattr(tokenizer, name, token)
            setattr(tokenizer, f"{name}_id", tokenizer.convert_tokens_to_ids(token))
        image_processor = Gemma3ImageProcessorPil(size={"height": 16, "width": 16}, do_pan_and_scan=False)
        template = chat_template(GEMMA3_TOKENS["boi_token"])
        return Gemma3Processor(image_processor=image_processor, tokenizer=tokenizer, chat_template=template,
                               image_seq_length=4)  # fmt: skip
    raise ValueError(f"unknown family {family!r}; choose from {FAMILIES}")


def model(family: str, seed: int = 0):
    tokenizer = processor(family).tokenizer
    ids = tokenizer.convert_tokens_to_ids
    text = dict(TEXT, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id, bos_token_id=None)  # fmt: skip
    if family == "llava":
        vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                  image_size=16, patch_size=4, projection_dim=32)  # fmt: skip
        config = LlavaConfig(vision_config=vision, text_config=LlamaConfig(**text), image_token_id=ids("<image>"),
                             vision_feature_select_strategy="default", vision_feature_layer=-1)  # fmt: skip
        cls = LlavaForConditionalGeneration
    elif family == "qwen2_vl":
        rope = {"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 10000.0}  # head_dim 16
        vision = dict(depth=1, embed_dim=32, hidden_size=D, num_heads=2, mlp_ratio=2, patch_size=4,
                      spatial_merge_size=2, temporal_patch_size=2, in_chans=3)  # fmt: skip
        config = Qwen2VLConfig(text_config=dict(text, rope_parameters=rope), vision_config=vision,
                               image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
                               vision_start_token_id=ids("<|vision_start|>"),
                               vision_end_token_id=ids("<|vision_end|>"),
                               pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)  # fmt: skip
        cls = Qwen2VLForConditionalGeneration
    elif family == "idefics3":
        vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=16,
                      patch_size=4)  # fmt: skip
        config = Idefics3Config(vision_config=vision, text_config=dict(text, model_type="llama"), scale_factor=2,
                                image_token_id=ids("<image>"), pad_token_id=tokenizer.pad_token_id)  # fmt: skip
        cls = Idefics3ForConditionalGeneration
    elif family == "gemma3":
        vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=16,
                      patch_size=4)  # fmt: skip
        config = Gemma3Config(text_config=dict(text, head_dim=16, sliding_window=64), vision_config=vision,
                              mm_tokens_per_image=4, image_token_id=ids(GEMMA3_TOKENS["image_token"]),
                              boi_token_id=ids(GEMMA3_TOKENS["boi_token"]),
                              eoi_token_id=ids(GEMMA3_TOKENS["eoi_token"]))  # fmt: skip
        cls = Gemma3ForConditionalGeneration
    else:
        raise ValueError(f"unknown family {family!r}; choose from {FAMILIES}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return cls(config)


def image_token_id(family: str) -> int:
    token = {"qwen2_vl": "<|image_pad|>", "gemma3": GEMMA3_TOKENS["image_token"]}.get(family, "<image>")
    return processor(family).tokenizer.convert_tokens_to_ids(token)


def _image(rng: random.Random) -> Image.Image:
    # Sizes vary, so Qwen2-VL's placeholder counts and Idefics3's pixel_attention_mask vary too.
    height, width = rng.choice([16, 24]), rng.choice([16, 24, 32])
    pixels = np.random.default_rng(rng.randrange(2**32)).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def _task(rng: random.Random) -> tuple[str, str]:
    numbers = [rng.randint(0, 99) for _ in range(rng.randint(2, 5))]
    return "sort the numbers " + " ".join(map(str, numbers)), " ".join(map(str, sorted(numbers)))


def conversational_dataset(n: int = 16, seed: int = 0, text_only_every: int = 0) -> Dataset:
    """TRL's conversational vision format: `images` (a list of PIL images) and `messages` with string content (TRL
    inserts the image entries). With `text_only_every=k`, every k-th row has no image."""
    rng = random.Random(seed)
    images, messages = [], []
    for i in range(n):
        prompt, answer = _task(rng)
        images.append([] if text_only_every and i % text_only_every == text_only_every - 1 else [_image(rng)])
        messages.append([{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}])
    return Dataset.from_dict({"images": images, "messages": messages})


def prompt_completion_dataset(n: int = 16, seed: int = 0) -> Dataset:
    """TRL's conversational prompt-completion format with images."""
    rng = random.Random(seed)
    images, prompts, completions = [], [], []
    for _ in range(n):
        prompt, answer = _task(rng)
        images.append([_image(rng)])
        prompts.append([{"role": "user", "content": prompt}])
        completions.append([{"role": "assistant", "content": answer}])
    return Dataset.from_dict({"images": images, "prompt": prompts, "completion": completions})
