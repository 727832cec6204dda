"""Core: the paper SymNoise implements, and what the model cards of SymNoise-trained models say about it."""

import os
import textwrap

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


def append_citation(output_dir) -> None:
    """Append the paper and its BibTeX to the README.md model card that transformers' Trainer wrote (TRL's trainers
    cite the paper themselves, from `PAPER`)."""
    path = os.path.join(output_dir, "README.md")
    if not os.path.exists(path):
        return
    with open(path, "a") as card:
        card.write(
            f"\n## SymNoise\n\nTrained with SymNoise ([{PAPER['title']}](https://arxiv.org/abs/{PAPER['id']})), "
            f"through symnoise-trl.\n\n```bibtex\n{PAPER['citation']}\n```\n"
        )
