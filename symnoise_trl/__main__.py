"""CLI: `python -m symnoise_trl` runs `symnoise-sft`."""

from .cli.command import main

main()
