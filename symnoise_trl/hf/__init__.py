"""HF: what SymNoise reads of transformers, TRL and PEFT models and of accelerate's run: the model's embeddings and
placeholder tokens, the one support check, the private-name adapter, and the hook on a model (`activate_symnoise`)."""
