"""HF: the parts of a transformers model that SymNoise reads: the model inside accelerate and PEFT wrappers, its token
embedding module, and a vision-language model's placeholder token ids."""

import torch


def transformers_model(model, accelerator=None):
    """The transformers model inside `model`: unwrapped from accelerate (DDP, DeepSpeed, ...) and from PEFT."""
    if accelerator is not None:
        model = accelerator.unwrap_model(model)
    if hasattr(model, "get_base_model"):  # a PeftModel -> the transformers model it wraps
        model = model.get_base_model()
    return model


def input_embeddings(model, accelerator=None) -> torch.nn.Module:
    """The token embedding module whose output SymNoise noises; a ValueError naming the model class when there is
    none (`get_input_embeddings` not implemented, or returning something that is not a token embedding)."""
    model = transformers_model(model, accelerator)
    name = type(model).__name__
    try:
        embeddings = model.get_input_embeddings()
    except (AttributeError, NotImplementedError) as error:
        raise ValueError(
            f"SymNoise cannot find the input embeddings of {name}: get_input_embeddings() raised "
            f"{type(error).__name__}. SymNoise noises the output of the model's token embedding module."
        ) from None
    # A LoRA-adapted embedding (PEFT) wraps the torch.nn.Embedding as its `base_layer`.
    if isinstance(embeddings, torch.nn.Embedding) or isinstance(
        getattr(embeddings, "base_layer", None), torch.nn.Embedding
    ):
        return embeddings
    raise ValueError(
        f"SymNoise cannot find the input embeddings of {name}: get_input_embeddings() returned "
        f"{type(embeddings).__name__}, not a token embedding module (torch.nn.Embedding)."
    )


# The config fields that name a multimodal model's placeholder tokens: transformers' vision-language models (LLaVA,
# Qwen2-VL, Gemma 3, Idefics3, ...) embed them like text, then overwrite those positions with the image, video or
# audio features (`masked_scatter` on the embedding output). `*_index` are older aliases of the same ids.
PLACEHOLDER_FIELDS = (
    "image_token_id", "image_token_index", "video_token_id", "video_token_index", "audio_token_id",
    "audio_token_index",
)  # fmt: skip


def placeholder_token_ids(model, accelerator=None) -> tuple[int, ...]:
    """The token ids whose embeddings `model` replaces by image, video or audio features (empty for a text model).
    SymNoise adds no noise at those positions and counts only the other, text, tokens in L."""
    config = getattr(transformers_model(model, accelerator), "config", None)  # None: a plain torch module
    ids = {getattr(config, field, None) for field in PLACEHOLDER_FIELDS}
    return tuple(sorted(i for i in ids if isinstance(i, int) and not isinstance(i, bool)))
