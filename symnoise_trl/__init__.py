"""symnoise-trl: SymNoise (symmetric Rademacher noisy embeddings, arXiv 2312.01523) for TRL fine-tuning."""

__version__ = "0.1.0"
