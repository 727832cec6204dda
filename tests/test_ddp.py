"""Two data-parallel processes (torchrun, gloo on CPU): different noise per rank, identical parameters."""

import os
import subprocess
import sys

import torch


def test_ranks_draw_different_noise_and_stay_in_sync(tmp_path):
    worker = os.path.join(os.path.dirname(__file__), "ddp_worker.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533", worker,
         str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    # Same steps, different seeds on each rank.
    assert [s for s, _ in ranks[0]["seeds"]] == [s for s, _ in ranks[1]["seeds"]] == [0, 1]
    assert all(a != b for (_, a), (_, b) in zip(ranks[0]["seeds"], ranks[1]["seeds"], strict=True))
    # The signs are a function of (seed, row, column): with a shared seed they would agree wherever both are noised.
    s0, s1 = ranks[0]["signs"], ranks[1]["signs"]
    rows, cols = min(s0.shape[0], s1.shape[0]), min(s0.shape[1], s1.shape[1])
    s0, s1 = s0[:rows, :cols], s1[:rows, :cols]
    both = (s0 != 0) & (s1 != 0)
    assert both.sum() > 1000
    agreement = (s0[both] == s1[both]).float().mean().item()
    assert 0.4 < agreement < 0.6
    # DDP keeps the replicas identical.
    for name, p in ranks[0]["params"].items():
        assert torch.equal(p, ranks[1]["params"][name]), name
