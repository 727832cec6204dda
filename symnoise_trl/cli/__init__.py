"""CLI: `symnoise-sft` (`command.py`), its data checks (`data.py`) and its checks before anything loads
(`preflight.py`)."""
