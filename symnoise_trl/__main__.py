"""CLI: `python -m symnoise_trl` runs `symnoise-sft`."""

from .cli import main

main()
