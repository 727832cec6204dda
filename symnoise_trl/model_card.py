"""Core: the paper SymNoise implements, and what the model cards of SymNoise-trained models say about it."""

import contextlib
import os
import textwrap
from pathlib import Path

PAPER = {
    "title": "SymNoise: Advancing Language Model Fine-tuning with Symmetric Noise",
    "id": "2312.01523",
    "citation": textwrap.dedent("""\
        @article{yadav2023symnoise,
            title   = {{SymNoise: Advancing Language Model Fine-tuning with Symmetric Noise}},
            author  = {Abhay Kumar Yadav and Arjun Singh},
            year    = 2023,
            journal = {arXiv preprint arXiv:2312.01523},
            url     = {https://arxiv.org/abs/2312.01523},
        }"""),
}
TAG = "symnoise"


def base_model_name(model_config) -> tuple[str | None, bool]:
    """(the base model's name, whether it is a Hub id) from a model's config: a Hub name as it is; a local folder by
    the `base_model` its own model card declares (the offline SmolLM2 copy declares its Hub id), else by its name."""
    name = model_config.name_or_path
    if not name or not Path(name).is_dir():
        return (name or None), bool(name)
    card = Path(name) / "README.md"
    if card.is_file():
        from huggingface_hub import ModelCard

        try:
            declared = ModelCard.load(card).data.to_dict().get("base_model")
        except Exception:  # noqa: BLE001 - a card we cannot read names nothing; training must not fail on it
            declared = None
        if isinstance(declared, str) and declared:
            return declared, True
    return Path(name).name, False


@contextlib.contextmanager
def hub_names_for_the_card(trainer, base_model: str | None, is_hub_id: bool):
    """While a trainer writes its card: the base model's Hub id as the config's name (the card links and tags it),
    and the output folder as the model of the usage snippet when the run has no Hub repository."""
    config = trainer.model.config
    saved = config.name_or_path, trainer.hub_model_id
    if is_hub_id:
        config.name_or_path = base_model
    trainer.hub_model_id = trainer.hub_model_id or str(trainer.args.output_dir)
    try:
        yield
    finally:
        config.name_or_path, trainer.hub_model_id = saved


def complete_card(output_dir, base_model: str | None, is_hub_id: bool, args) -> None:
    """Add to the README.md card a trainer wrote: the base model where the card could not name it (a local folder),
    the SymNoise settings, and the paper's citation if the card does not cite it yet."""
    path = os.path.join(output_dir, "README.md")
    if not os.path.exists(path):
        return
    with open(path, encoding="utf-8") as f:
        card = f.read()
    if base_model and not is_hub_id:  # TRL's template links the base model to the Hub, and renders None for a folder
        card = card.replace("[None](https://huggingface.co/None)", f"`{base_model}` (a local model folder)")
    from_seed = " (the run's `seed`)" if args.symnoise_seed is None else ""
    rows = [
        ("symnoise_alpha", args.symnoise_alpha),
        ("symnoise_length", args.symnoise_length),
        ("symnoise_distribution", args.symnoise_distribution),
        ("symnoise_seed", f"{args.symnoise_base_seed}{from_seed}"),
        ("symnoise_two_pass", args.symnoise_two_pass),
    ]
    section = [
        "",
        "## SymNoise",
        "",
        f"Trained with SymNoise ([{PAPER['title']}](https://arxiv.org/abs/{PAPER['id']})) through symnoise-trl"
        + (f", from the base model `{base_model}`" if base_model else "")
        + ", with these settings:",
        "",
        "| setting | value |",
        "|---|---|",
        *(f"| `{name}` | {value} |" for name, value in rows),
        "",
    ]
    if "@article{yadav2023symnoise" not in card:
        section += ["```bibtex", PAPER["citation"], "```", ""]
    with open(path, "w", encoding="utf-8") as f:
        f.write(card.rstrip("\n") + "\n" + "\n".join(section))
