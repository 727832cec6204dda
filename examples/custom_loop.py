"""SymNoise in a custom PyTorch training loop, with `activate_symnoise` and `symnoise_forward`.

Runs offline on a tiny random Llama and random token batches:

    python examples/custom_loop.py
    python examples/custom_loop.py --model <a causal LM on the Hub or on disk> --alpha 5

With a real model the batches are still random tokens: the point is the three lines that add SymNoise to a loop.
"""

import argparse

import torch
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

from symnoise_trl import activate_symnoise, deactivate_symnoise, symnoise_forward


def random_batch(vocab_size: int, batch_size: int, seq_len: int, generator: torch.Generator) -> dict:
    """Right-padded random sequences with a padded collator's keys."""
    input_ids = torch.randint(1, vocab_size, (batch_size, seq_len), generator=generator)
    lengths = torch.randint(seq_len // 2, seq_len + 1, (batch_size,), generator=generator)
    attention_mask = (torch.arange(seq_len)[None] < lengths[:, None]).long()
    labels = input_ids.masked_fill(attention_mask == 0, -100)
    return {"input_ids": input_ids * attention_mask, "attention_mask": attention_mask, "labels": labels}


def main(argv=None) -> list[float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="causal LM to load; default: a tiny random Llama")
    parser.add_argument("--alpha", type=float, default=5.0, help="SymNoise alpha (like NEFTune's)")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=32)
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    if args.model:
        model = AutoModelForCausalLM.from_pretrained(args.model)
    else:
        config = LlamaConfig(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2)  # fmt: skip
        model = LlamaForCausalLM(config)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)

    activate_symnoise(model, alpha=args.alpha)  # a hook on the input embeddings, inert until armed
    losses = []
    try:
        for step in range(args.steps):
            batch = random_batch(model.config.vocab_size, args.batch_size, args.seq_len, generator)
            # Inside the block the model sees the doubled batch [X + s*eps, X - s*eps]; its mean token loss is the
            # mean of the two halves' losses. One seed per step makes the noise reproducible.
            with symnoise_forward(model, batch, seed=step) as doubled:
                loss = model(**doubled).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            losses.append(loss.item())
            print(f"step {step}: loss {loss.item():.4f}")
    finally:
        deactivate_symnoise(model)
    return losses


if __name__ == "__main__":
    main()
