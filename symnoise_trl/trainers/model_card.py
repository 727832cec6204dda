"""Trainers: the paper SymNoise implements, and what the model cards of SymNoise-trained models say about it."""

import os
import textwrap
from pathlib import Path

from ..hf.internals import name_a_local_base_model

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


def complete_card(output_dir, base_model: str | None, is_hub_id: bool, settings, run_seed: int) -> None:
    """Add to the README.md card a trainer wrote: the base model where the card could not name it (a local folder),
    the run's SymNoise settings (`settings`; `run_seed` the run's own seed), and the paper's citation if the card does
    not cite it yet."""
    path = os.path.join(output_dir, "README.md")
    if not os.path.exists(path):
        return
    with open(path, encoding="utf-8") as f:
        card = f.read()
    if base_model and not is_hub_id:
        card = name_a_local_base_model(card, base_model)
    from_seed = " (the run's `seed`)" if settings.seed is None else ""
    rows = [
        ("symnoise_alpha", settings.alpha),
        ("symnoise_length", settings.length),
        ("symnoise_distribution", settings.distribution),
        ("symnoise_seed", f"{settings.base_seed(run_seed)}{from_seed}"),
        ("symnoise_two_pass", settings.two_pass),
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
