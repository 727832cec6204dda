"""torch.compile: SymNoise costs no more compiled graphs than plain training, and no frame falls back to eager.

A new seed every step and new sequence lengths must not recompile: the seed reaches the op as a tensor, the plan's
tensors are not reached through the nn.Module (static shapes), and the two-pass mode's passes share one graph.
Dynamo's `eager` backend: recompilation is decided by Dynamo's guards, whatever the backend.
"""

import pytest
import torch
import torch._dynamo
from torch._dynamo.utils import counters
from trl import SFTConfig, SFTTrainer

from symnoise_trl import SymNoiseSFTConfig, SymNoiseSFTTrainer, activate_symnoise, symnoise_forward

from helpers import tiny

LENGTHS = [9, 17, 12, 30, 9, 21, 14, 26, 11, 19, 23, 16]  # 12 steps, lengths varying


@pytest.fixture
def fresh_dynamo():
    torch._dynamo.reset()
    counters.clear()
    # Past the recompile limit Dynamo would silently run a frame in eager; here that is an error.
    with torch._dynamo.config.patch(fail_on_recompile_limit_hit=True):
        yield
    torch._dynamo.reset()


class Toy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(50, 64)
        self.head = torch.nn.Linear(64, 50)

    def get_input_embeddings(self):
        return self.embed

    def forward(self, input_ids, attention_mask=None):
        return self.head(self.embed(input_ids)).logsumexp(-1).mean()


def toy_graphs(mode: str) -> int:
    torch._dynamo.reset()
    counters.clear()
    model = Toy()
    compiled = torch.compile(model, backend="eager")
    if mode != "plain":
        activate_symnoise(model, alpha=5.0)
    gen = torch.Generator().manual_seed(0)
    for step, length in enumerate(LENGTHS):
        ids = torch.randint(0, 50, (2, length), generator=gen)
        mask = torch.ones_like(ids)
        mask[1, length // 2 :] = 0  # padding: per-token scales differ
        batch = {"input_ids": ids, "attention_mask": mask}
        if mode == "plain":
            compiled(**batch)
        elif mode == "one_pass":
            with symnoise_forward(model, batch, seed=1000 + step) as doubled:
                noisy = compiled(**doubled)
            assert noisy != model(**doubled)  # outside the block: plain; the hook ran inside the compiled forward
        else:
            for half in ("plus", "minus"):
                with symnoise_forward(model, batch, seed=1000 + step, half=half) as one:
                    compiled(**one)
    return counters["stats"]["unique_graphs"]


def test_symnoise_forward_compiles_no_more_graphs_than_plain(fresh_dynamo):
    plain = toy_graphs("plain")
    assert plain >= 1
    assert toy_graphs("one_pass") <= plain + 1
    assert toy_graphs("two_pass") <= plain + 1


def test_two_pass_halves_under_compile_match_eager(fresh_dynamo):
    model = Toy()
    activate_symnoise(model, alpha=5.0)
    compiled = torch.compile(model.embed, backend="eager", fullgraph=True)
    batch = {"input_ids": torch.randint(0, 50, (2, 13)), "attention_mask": torch.ones(2, 13, dtype=torch.long)}
    for half in ("plus", "minus"):
        with symnoise_forward(model, batch, seed=77, half=half) as one:
            assert torch.equal(compiled(one["input_ids"]), model.embed(one["input_ids"]))
    with symnoise_forward(model, batch, seed=77) as doubled:
        both = model.embed(doubled["input_ids"])
    with symnoise_forward(model, batch, seed=77, half="minus") as one:
        assert torch.equal(compiled(one["input_ids"]), both[2:])


def trainer_graphs(trainer_cls, config_cls, tmp_path, **symnoise) -> tuple[int, int]:
    torch._dynamo.reset()
    counters.clear()
    args = tiny.train_args(config_cls, tmp_path / f"run{len(symnoise)}", max_steps=12, per_device_train_batch_size=2,
                           torch_compile=True, torch_compile_backend="eager", **symnoise)  # fmt: skip
    trainer = trainer_cls(model=tiny.model(), args=args, train_dataset=tiny.prompt_completion_dataset(64),
                          processing_class=tiny.tokenizer())  # fmt: skip
    trainer.train()
    return counters["stats"]["unique_graphs"], sum(counters["graph_break"].values())


def test_trainer_with_torch_compile_recompiles_no_more_than_sft(tmp_path, fresh_dynamo):
    sft_graphs, sft_breaks = trainer_graphs(SFTTrainer, SFTConfig, tmp_path)
    for two_pass in (False, True):
        graphs, breaks = trainer_graphs(SymNoiseSFTTrainer, SymNoiseSFTConfig, tmp_path, symnoise_alpha=5.0,
                                        symnoise_two_pass=two_pass)  # fmt: skip
        assert graphs <= sft_graphs + 1, f"two_pass={two_pass}: {graphs} graphs, SFT {sft_graphs}"
        assert breaks <= sft_breaks, f"two_pass={two_pass}: {breaks} graph breaks, SFT {sft_breaks}"
