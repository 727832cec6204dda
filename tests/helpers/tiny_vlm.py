"""Tiny vision-language models with their processors, and image+text data sets, built in code (nothing is downloaded).

The nine families TRL's own VLM SFT tests train, and Idefics3, as their vision inputs reach the model:
- "llava": `pixel_values` (n_images, C, H, W), one `<image>` expanded to a fixed 16 placeholders (a CLIP tower).
- "llava_next": `pixel_values` (n_images, n_crops, C, H, W), crops padded per image, with `image_sizes`
  (n_images, 2); the number of placeholders follows each image's size (AnyRes).
- "qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_5", "qwen3_5_moe": `pixel_values` as flattened patches
  (n_patches, C*T*P*P) with `image_grid_thw` (n_images, 3); the number of placeholders follows the image's size,
  and `mm_token_type_ids` marks them. Qwen2.5-VL adds windowed vision attention, Qwen3-VL deepstack features that
  enter the language model past its first layer, Qwen3.5 linear-attention (gated delta) layers, Qwen3.5-MoE experts.
- "idefics3": `pixel_values` (B, max_images, C, H, W) per example, padded, with `pixel_attention_mask`.
- "gemma3": `pixel_values` per image with `token_type_ids` marking the placeholders (TRL's Gemma special case), and
  token embeddings scaled by sqrt(d) inside the embedding module (a SigLIP tower).
- "gemma4": `pixel_values` as padded patch rows per image (n_images, max_patches, 3*P*P) with `image_position_ids`
  (n_images, max_patches, 2), `mm_token_type_ids`, and per-layer token embeddings beside the main ones; its audio
  tower takes `input_features` and `input_features_mask` per audio clip (`AUDIO_FAMILIES`).
Each processor is the family's own transformers class over a copy of the tests' BPE tokenizer, with the family's
special tokens added and a chat template that renders TRL's multimodal messages. Video processors need torchvision
(no CPU build for this torch on the index): `still_video_collator` turns each image into the one-frame (Gemma 4) or
two-frame (Qwen) still video that a video processor would emit for it.
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
    Gemma4AudioFeatureExtractor,
    Gemma4Config,
    Gemma4ForConditionalGeneration,
    Gemma4ImageProcessorPil,
    Idefics3Config,
    Idefics3ForConditionalGeneration,
    Idefics3ImageProcessorPil,
    Idefics3Processor,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaNextConfig,
    LlavaNextForConditionalGeneration,
    LlavaNextImageProcessorPil,
    LlavaNextProcessor,
    LlavaProcessor,
    ProcessorMixin,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
    Qwen2VLImageProcessorPil,
    Qwen2VLProcessor,
    Qwen3_5Config,
    Qwen3_5ForConditionalGeneration,
    Qwen3_5MoeConfig,
    Qwen3_5MoeForConditionalGeneration,
    Qwen3VLConfig,
    Qwen3VLForConditionalGeneration,
    Qwen3VLProcessor,
)

from helpers import tiny

FAMILIES = ("llava", "llava_next", "qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_5", "qwen3_5_moe", "idefics3",
            "gemma3", "gemma4")  # fmt: skip
QWEN_FAMILIES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_5", "qwen3_5_moe")
VIDEO_FAMILIES = (*QWEN_FAMILIES, "gemma4")  # what still_video_collator converts
AUDIO_FAMILIES = ("gemma4",)
TEXT = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
D = TEXT["hidden_size"]
GEMMA3_TOKENS = {"boi_token": "<start_of_image>", "image_token": "<image_soft_token>", "eoi_token": "<end_of_image>"}
GEMMA4_TOKENS = {"boi_token": "<|image>", "image_token": "<|image|>", "eoi_token": "<image|>", "boa_token": "<|audio>",
                 "audio_token": "<|audio|>", "eoa_token": "<audio|>"}  # fmt: skip
QWEN_TOKENS = {"vision_start": "<|vision_start|>", "image": "<|image_pad|>", "vision_end": "<|vision_end|>",
               "video": "<|video_pad|>"}  # fmt: skip
ANYRES = [[16, 32], [32, 16], [32, 32]]  # LLaVA-NeXT's image_grid_pinpoints, in pixels


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


def _tokenizer(special_tokens: list[str], named: dict[str, str] | None = None):
    """The tests' tokenizer with `special_tokens` added; `named` tokens also as the attributes (`image_token`,
    `image_token_id`, ...) that Gemma's own tokenizers expose and their processors read."""
    tokenizer = copy.deepcopy(tiny.tokenizer())
    tokenizer.add_special_tokens({"additional_special_tokens": special_tokens})
    for name, token in (named or {}).items():
        setattr(tokenizer, name, token)
        setattr(tokenizer, f"{name}_id", tokenizer.convert_tokens_to_ids(token))
    return tokenizer


class _WithoutVideoProcessor(ProcessorMixin):
    """Takes a processor's `video_processor` argument and drops it: transformers' video processors need torchvision,
    and the torchvision wheels for this torch on the package index are CUDA builds that fail to import with the CPU
    torch. The processors below are their families' own classes with images (and audio) only."""

    def __init__(self, *args, video_processor=None, **kwargs):
        super().__init__(*args, **kwargs)


def _image_only(processor_class):
    """A Qwen VL processor class (image processor, tokenizer, video processor) without its video slot."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        processor_class.__init__(self, image_processor, tokenizer, None, chat_template=chat_template, **kwargs)

    bases = (processor_class, _WithoutVideoProcessor)
    return type(f"ImageOnly{processor_class.__name__}", bases, {"__init__": __init__, "__module__": __name__})


ImageOnlyQwen2VLProcessor = _image_only(Qwen2VLProcessor)
ImageOnlyQwen3VLProcessor = _image_only(Qwen3VLProcessor)  # Qwen3.5's processor too


@functools.cache
def image_audio_gemma4_processor_class():
    """Gemma4Processor with images and audio. Imported here: at transformers 5.17 (the floors) Gemma4Processor's
    module needs torchvision."""
    from transformers import Gemma4Processor

    class ImageAudioGemma4Processor(Gemma4Processor, _WithoutVideoProcessor):
        def __init__(self, feature_extractor=None, image_processor=None, tokenizer=None, chat_template=None, **kw):
            super().__init__(feature_extractor, image_processor, tokenizer, None, chat_template=chat_template, **kw)

    return ImageAudioGemma4Processor


QWEN_PROCESSORS = {"qwen2_vl": ImageOnlyQwen2VLProcessor, "qwen2_5_vl": _image_only(Qwen2_5_VLProcessor),
                   "qwen3_vl": ImageOnlyQwen3VLProcessor, "qwen3_5": ImageOnlyQwen3VLProcessor,
                   "qwen3_5_moe": ImageOnlyQwen3VLProcessor}  # fmt: skip


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
    if family == "llava_next":
        image_processor = LlavaNextImageProcessorPil(
            size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16}, image_grid_pinpoints=ANYRES
        )
        return LlavaNextProcessor(
            image_processor=image_processor,
            tokenizer=_tokenizer(["<image>"]),
            patch_size=4,
            vision_feature_select_strategy="default",
            num_additional_image_tokens=1,
            chat_template=chat_template("<image>"),
            image_token="<image>",
        )
    if family in QWEN_FAMILIES:
        image_processor = Qwen2VLImageProcessorPil(
            patch_size=4, merge_size=2, temporal_patch_size=2, size={"shortest_edge": 64, "longest_edge": 1024}
        )
        return QWEN_PROCESSORS[family](
            image_processor=image_processor,
            tokenizer=_tokenizer(list(QWEN_TOKENS.values())),
            chat_template=chat_template("".join(QWEN_TOKENS[k] for k in ("vision_start", "image", "vision_end"))),
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
        tokenizer = _tokenizer(list(GEMMA3_TOKENS.values()), GEMMA3_TOKENS)
        image_processor = Gemma3ImageProcessorPil(size={"height": 16, "width": 16}, do_pan_and_scan=False)
        template = chat_template(GEMMA3_TOKENS["boi_token"])
        return Gemma3Processor(image_processor=image_processor, tokenizer=tokenizer, chat_template=template,
                               image_seq_length=4)  # fmt: skip
    if family == "gemma4":
        # 70 soft tokens per image at most, the fewest Gemma 4's image processor allows: images are resized to fill
        # 630 patches of 4 x 4 pixels, pooled 3 x 3.
        image_processor = Gemma4ImageProcessorPil(patch_size=4, max_soft_tokens=70, pooling_kernel_size=3)
        return image_audio_gemma4_processor_class()(
            feature_extractor=Gemma4AudioFeatureExtractor(),
            image_processor=image_processor,
            tokenizer=_tokenizer(list(GEMMA4_TOKENS.values()), GEMMA4_TOKENS),
            chat_template=chat_template(GEMMA4_TOKENS["image_token"]),
            image_seq_length=70,
        )
    raise ValueError(f"unknown family {family!r}; choose from {FAMILIES}")


def _qwen_config(family: str, text: dict, ids) -> object:
    vision = dict(depth=2, hidden_size=32, num_heads=2, intermediate_size=64, patch_size=4, spatial_merge_size=2,
                  temporal_patch_size=2, in_channels=3, out_hidden_size=D)  # fmt: skip
    rope = {"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 10000.0}  # head_dim 16
    if family == "qwen2_vl":
        vision = dict(depth=1, embed_dim=32, hidden_size=D, num_heads=2, mlp_ratio=2, patch_size=4,
                      spatial_merge_size=2, temporal_patch_size=2, in_chans=3)  # fmt: skip
        config_cls = Qwen2VLConfig
    elif family == "qwen2_5_vl":
        vision.update(fullatt_block_indexes=[1], window_size=16)  # block 0 attends in windows of 2 x 2 merged patches
        config_cls = Qwen2_5_VLConfig
    elif family == "qwen3_vl":
        vision.update(deepstack_visual_indexes=[0], num_position_embeddings=64)
        rope["mrope_interleaved"] = True
        config_cls = Qwen3VLConfig
    else:  # Qwen3.5: a gated-delta (linear attention) layer, then a full-attention one; rotary on a quarter of a head
        vision.update(num_position_embeddings=64)
        rope = {"rope_type": "default", "mrope_section": [2, 1, 1], "mrope_interleaved": True, "rope_theta": 10000.0,
                "partial_rotary_factor": 0.25}  # fmt: skip
        text = dict(text, head_dim=32, layer_types=["linear_attention", "full_attention"], linear_key_head_dim=16,
                    linear_value_head_dim=16, linear_num_key_heads=2, linear_num_value_heads=4)  # fmt: skip
        config_cls = Qwen3_5Config
        if family == "qwen3_5_moe":
            text = {k: v for k, v in text.items() if k != "intermediate_size"}
            text.update(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
                        shared_expert_intermediate_size=32)  # fmt: skip
            config_cls = Qwen3_5MoeConfig
    text = dict(text, rope_parameters=rope) if "head_dim" in text else dict(text, rope_parameters=rope, head_dim=16)
    return config_cls(text_config=text, vision_config=vision, image_token_id=ids(QWEN_TOKENS["image"]),
                      video_token_id=ids(QWEN_TOKENS["video"]), vision_start_token_id=ids(QWEN_TOKENS["vision_start"]),
                      vision_end_token_id=ids(QWEN_TOKENS["vision_end"]))  # fmt: skip


QWEN_MODELS = {"qwen2_vl": Qwen2VLForConditionalGeneration, "qwen2_5_vl": Qwen2_5_VLForConditionalGeneration,
               "qwen3_vl": Qwen3VLForConditionalGeneration, "qwen3_5": Qwen3_5ForConditionalGeneration,
               "qwen3_5_moe": Qwen3_5MoeForConditionalGeneration}  # fmt: skip
# Gemma 4 sizes its audio projection from the first conv width as if it were the 128 mel bins: it must be 128.
GEMMA4_AUDIO = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, subsampling_conv_channels=[128, 4],
                    output_proj_dims=32, attention_chunk_size=4, attention_context_left=5)  # fmt: skip


def model(family: str, seed: int = 0):
    tokenizer = processor(family).tokenizer
    ids = tokenizer.convert_tokens_to_ids
    text = dict(TEXT, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id, bos_token_id=None)  # fmt: skip
    if family in ("llava", "llava_next"):
        vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                  image_size=16, patch_size=4, projection_dim=32)  # fmt: skip
        common = dict(vision_config=vision, text_config=LlamaConfig(**text), vision_feature_select_strategy="default",
                      vision_feature_layer=-1)  # fmt: skip
        if family == "llava":
            config, cls = LlavaConfig(**common, image_token_id=ids("<image>")), LlavaForConditionalGeneration
        else:
            config = LlavaNextConfig(**common, image_token_index=ids("<image>"), image_grid_pinpoints=ANYRES)
            cls = LlavaNextForConditionalGeneration
    elif family in QWEN_FAMILIES:
        config, cls = _qwen_config(family, text, ids), QWEN_MODELS[family]
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
    elif family == "gemma4":
        text = dict(text, head_dim=16, global_head_dim=16, sliding_window=64, num_kv_shared_layers=0,
                    layer_types=["sliding_attention", "full_attention"], hidden_size_per_layer_input=8,
                    vocab_size_per_layer_input=len(tokenizer))  # fmt: skip
        vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                      num_key_value_heads=2, head_dim=16, patch_size=4, pooling_kernel_size=3,
                      position_embedding_size=630, default_output_length=70)  # fmt: skip
        tokens = {f"{name}_id": ids(GEMMA4_TOKENS[name]) for name in ("image_token", "boi_token", "eoi_token",
                                                                       "audio_token", "boa_token")}  # fmt: skip
        config = Gemma4Config(text_config=text, vision_config=vision, audio_config=GEMMA4_AUDIO,
                              video_token_id=ids("<|video|>"), **tokens)  # fmt: skip
        cls = Gemma4ForConditionalGeneration
    else:
        raise ValueError(f"unknown family {family!r}; choose from {FAMILIES}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return cls(config)


def placeholder_ids(family: str) -> list[int]:
    """The token ids the family's model replaces by image, video or audio features."""
    names = {"gemma3": [GEMMA3_TOKENS["image_token"]], "gemma4": [GEMMA4_TOKENS["image_token"], "<|video|>",
             GEMMA4_TOKENS["audio_token"]]}.get(family, [QWEN_TOKENS["image"], QWEN_TOKENS["video"]]
             if family in QWEN_FAMILIES else ["<image>"])  # fmt: skip
    return [processor(family).tokenizer.convert_tokens_to_ids(name) for name in names]


def image_token_id(family: str) -> int:
    return placeholder_ids(family)[0]


def _image(rng: random.Random) -> Image.Image:
    # Sizes vary, so the placeholder counts of Qwen, LLaVA-NeXT and Gemma 4, and Idefics3's pixel_attention_mask vary.
    height, width = rng.choice([16, 24]), rng.choice([16, 24, 32])
    pixels = np.random.default_rng(rng.randrange(2**32)).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def _task(rng: random.Random) -> tuple[str, str]:
    numbers = [rng.randint(0, 99) for _ in range(rng.randint(2, 5))]
    return "sort the numbers " + " ".join(map(str, numbers)), " ".join(map(str, sorted(numbers)))


def conversational_dataset(n: int = 16, seed: int = 0, text_only_every: int = 0, images_per_row: int = 1) -> Dataset:
    """TRL's conversational vision format: `images` (a list of PIL images) and `messages` with string content (TRL
    inserts the image entries). With `text_only_every=k`, every k-th row has no image."""
    rng = random.Random(seed)
    images, messages = [], []
    for i in range(n):
        prompt, answer = _task(rng)
        text_only = text_only_every and i % text_only_every == text_only_every - 1
        images.append([] if text_only else [_image(rng) for _ in range(images_per_row)])
        messages.append([{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}])
    return Dataset.from_dict({"images": images, "messages": messages})


def prompt_completion_dataset(n: int = 16, seed: int = 0, images_per_row: int = 1) -> Dataset:
    """TRL's conversational prompt-completion format with images (several per row: TRL's multi-image data)."""
    rng = random.Random(seed)
    images, prompts, completions = [], [], []
    for _ in range(n):
        prompt, answer = _task(rng)
        images.append([_image(rng) for _ in range(images_per_row)])
        prompts.append([{"role": "user", "content": prompt}])
        completions.append([{"role": "assistant", "content": answer}])
    return Dataset.from_dict({"images": images, "prompt": prompts, "completion": completions})


DATA = {
    "messages": lambda: conversational_dataset(16, text_only_every=4),  # every 4th row has no image
    "prompt_completion": lambda: prompt_completion_dataset(16),
    "multi_image": lambda: prompt_completion_dataset(16, images_per_row=2),  # as TRL's zen-multi-image
}


def still_video_collator(family: str, collator):
    """Wraps TRL's vision collator: every image of the batch becomes a still video, with the keys and placeholder
    tokens the family's video processor gives such a video. Qwen: the image's patches already repeat it over the two
    frames of a temporal patch, so `pixel_values_videos` and `video_grid_thw` are the image's, `<|video_pad|>`
    replaces `<|image_pad|>`, `mm_token_type_ids` 2 replaces 1, and Qwen2.5-VL gets `second_per_grid_ts`. Gemma 4:
    one frame per video (`pixel_values_videos`, `video_position_ids`, `num_frames_per_video`), `<|video|>` tokens."""
    tokenizer = processor(family).tokenizer
    image_id = image_token_id(family)
    video_id = tokenizer.convert_tokens_to_ids(QWEN_TOKENS["video"] if family in QWEN_FAMILIES else "<|video|>")

    def collate(examples):
        batch = collator(examples)
        if "pixel_values" not in batch:
            return batch
        batch["input_ids"] = torch.where(batch["input_ids"] == image_id, video_id, batch["input_ids"])
        batch["mm_token_type_ids"] = torch.where(batch["mm_token_type_ids"] == 1, 2, batch["mm_token_type_ids"])
        batch["pixel_values_videos"] = batch.pop("pixel_values")
        if family == "gemma4":
            batch["video_position_ids"] = batch.pop("image_position_ids")
            batch["num_frames_per_video"] = torch.ones(len(batch["video_position_ids"]), dtype=torch.int64)
        else:
            batch["video_grid_thw"] = batch.pop("image_grid_thw")
            if family == "qwen2_5_vl":
                batch["second_per_grid_ts"] = torch.ones(len(batch["video_grid_thw"]))
        return batch

    return collate


def audio_dataset(n: int = 8, seed: int = 0) -> Dataset:
    """Spoken-task rows for Gemma 4's audio tower: `audio` (a 16 kHz waveform of 0.2-0.4 s) and a `prompt` with the
    audio placeholder, and a `completion`."""
    rng = random.Random(seed)
    audio, prompts, completions = [], [], []
    for _ in range(n):
        prompt, answer = _task(rng)
        samples = rng.choice([3200, 4800, 6400])
        audio.append(np.random.default_rng(rng.randrange(2**32)).standard_normal(samples).astype(np.float32) * 0.1)
        prompts.append(f"<user> {GEMMA4_TOKENS['audio_token']} {prompt}\n<assistant> ")
        completions.append(answer)
    return Dataset.from_dict({"audio": audio, "prompt": prompts, "completion": completions})


def audio_collator(family: str):
    """What a user writes for audio SFT (TRL's vision collator takes images only): the processor on the prompt and the
    audio, the completion appended, labels on the completion tokens."""
    proc = processor(family)

    def collate(examples):
        texts = [e["prompt"] + e["completion"] + proc.tokenizer.eos_token for e in examples]
        audio = [np.asarray(e["audio"], dtype=np.float32) for e in examples]
        batch = proc(text=texts, audio=audio, padding=True, return_tensors="pt")
        labels = batch["input_ids"].clone()
        labels[batch["attention_mask"] == 0] = -100
        labels[torch.isin(batch["input_ids"], torch.tensor(placeholder_ids(family)))] = -100
        batch["labels"] = labels
        return dict(batch)

    return collate
