"""One rank of the FSDP2 test (run by torchrun, gloo on CPU): PyTorch's `fully_shard` on the decoder layers and the
root of a tiny Llama, a hand-written loop with the public hook API (Trainer refuses FSDP on a CPU). With `--single`
it runs the same loop in one process on both ranks' rows, as the reference. Saves what it saw."""

import os
import sys

import torch
import torch.distributed as dist

sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))  # tests/: helpers
from symnoise_trl import activate_symnoise, deactivate_symnoise, symnoise_forward  # noqa: E402

from helpers import tiny  # noqa: E402

STEPS, ROWS_PER_RANK, LENGTH = 3, 2, 12


def rank_batch(rank: int, step: int) -> dict:
    """Rows of equal length (no padding), so each rank's token mean weighs the same as the combined batch's."""
    generator = torch.Generator().manual_seed(1000 * step + rank)
    input_ids = torch.randint(2, 300, (ROWS_PER_RANK, LENGTH), generator=generator)
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "labels": input_ids.clone()}


class OutputKeeper:
    """An embedding hook registered before SymNoise's: keeps each output and a copy, to see it was not written."""

    def __init__(self, model):
        self.kept = []
        model.get_input_embeddings().register_forward_hook(self)

    def __call__(self, module, args, output):
        self.kept.append((output, output.detach().clone()))


def train(alpha: float, two_pass: bool, rows: list[dict], seeds: list[int], mesh=None, mixed=False) -> dict:
    model = tiny.model()  # the same weights on every rank (seeded)
    keeper = OutputKeeper(model)
    if mesh is not None:
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if mixed else None
        kwargs = {"mesh": mesh, **({"mp_policy": policy} if policy else {})}
        for layer in model.model.layers:
            fully_shard(layer, **kwargs)
        fully_shard(model, **kwargs)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    activate_symnoise(model, alpha=alpha)
    losses, received = [], []
    for batch, seed in zip(rows, seeds, strict=True):
        halves = ("plus", "minus") if two_pass else ("both",)
        total = 0.0
        for half in halves:
            with symnoise_forward(model, batch, seed=seed, half=half) as inputs:
                out = model(**inputs)
                loss = out.loss / len(halves)
            loss.backward()
            total += loss.item()
        losses.append(total)
        optimizer.step()
        optimizer.zero_grad()
    deactivate_symnoise(model)
    for output, copy in keeper.kept:
        received.append(bool(torch.equal(output, copy)))
    params = {n: (p.full_tensor() if hasattr(p, "full_tensor") else p).detach().float().clone()
              for n, p in model.named_parameters()}  # fmt: skip
    return {"losses": losses, "params": params, "outputs_untouched": received}


def main(out_dir: str, single: bool):
    if single:  # the reference: both ranks' rows in one batch, one process
        keys = ("input_ids", "attention_mask", "labels")
        rows = [{k: torch.cat([rank_batch(r, s)[k] for r in (0, 1)]) for k in keys} for s in range(STEPS)]
        torch.save(train(0.0, False, rows, [s for s in range(STEPS)]), os.path.join(out_dir, "single.pt"))
        return
    dist.init_process_group("gloo")
    from torch.distributed.device_mesh import init_device_mesh

    rank, world = dist.get_rank(), dist.get_world_size()
    mesh = init_device_mesh("cpu", (world,))
    rows = [rank_batch(rank, s) for s in range(STEPS)]
    seeds = [1000 * s + rank for s in range(STEPS)]  # each rank its own noise
    results = {"world_size": world}
    for name, alpha, two_pass, mixed in (("alpha0", 0.0, False, False), ("one_pass", 5.0, False, False),
                                         ("two_pass", 5.0, True, False), ("mixed", 5.0, False, True)):  # fmt: skip
        try:
            results[name] = train(alpha, two_pass, rows, seeds, mesh, mixed)
        except Exception as error:  # noqa: BLE001 - reported to the test, which decides
            results[name] = {"error": f"{type(error).__name__}: {error}"}
    first = [rank_batch(rank, 0)]
    model = tiny.model()
    keeper = OutputKeeper(model)
    activate_symnoise(model, alpha=5.0)
    with symnoise_forward(model, first[0], seed=seeds[0]) as doubled:
        embeds = model.get_input_embeddings()(doubled["input_ids"])
    results["signs"] = torch.sign(embeds[:ROWS_PER_RANK] - keeper.kept[-1][1][:ROWS_PER_RANK])
    torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], len(sys.argv) > 2 and sys.argv[2] == "--single")
