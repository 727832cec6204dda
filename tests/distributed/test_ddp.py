"""Two data-parallel processes (torchrun, gloo on CPU): different noise per rank, identical parameters, and a
two-pass mode whose first pass does not all-reduce."""

import os
import subprocess
import sys

import pytest
import torch

# Also run at the lowest versions pyproject.toml allows (scripts/test_floors.sh).
pytestmark = pytest.mark.floors


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    worker = os.path.join(os.path.dirname(os.path.dirname(__file__)), "workers", "ddp_worker.py")
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533", worker,
         str(out)],
        env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    return [torch.load(out / f"rank{r}.pt") for r in (0, 1)]


def test_ranks_draw_different_noise(ranks):
    runs = [r["one_pass"] for r in ranks]
    assert [r["world_size"] for r in runs] == [2, 2]
    # Same steps (two micro-batches each), different seeds on each rank.
    assert [s for s, _ in runs[0]["seeds"]] == [s for s, _ in runs[1]["seeds"]] == [0, 0, 1, 1]
    assert all(a != b for (_, a), (_, b) in zip(runs[0]["seeds"], runs[1]["seeds"], strict=True))
    # The signs are a function of (seed, row, column): with a shared seed they would agree wherever both are noised.
    s0, s1 = runs[0]["signs"], runs[1]["signs"]
    rows, cols = min(s0.shape[0], s1.shape[0]), min(s0.shape[1], s1.shape[1])
    s0, s1 = s0[:rows, :cols], s1[:rows, :cols]
    both = (s0 != 0) & (s1 != 0)
    assert both.sum() > 1000
    assert 0.4 < (s0[both] == s1[both]).float().mean().item() < 0.6


@pytest.mark.parametrize("mode", ["one_pass", "two_pass"])
def test_replicas_stay_identical(ranks, mode):
    for name, p in ranks[0][mode]["params"].items():
        assert torch.equal(p, ranks[1][mode]["params"][name]), name


def test_two_pass_all_reduces_once_per_optimizer_step(ranks):
    # Gradient accumulation already skips the sync on the first micro-batch; the + pass must skip it too, so the
    # two-pass mode all-reduces exactly as often as the one-pass mode.
    for rank in ranks:
        assert rank["one_pass"]["allreduces"] > 0
        assert rank["two_pass"]["allreduces"] == rank["one_pass"]["allreduces"]
        assert rank["two_pass"]["seeds"] == rank["one_pass"]["seeds"]  # one seed per micro-batch, both passes
    for name, p in ranks[0]["one_pass"]["params"].items():
        torch.testing.assert_close(ranks[0]["two_pass"]["params"][name], p, rtol=1e-4, atol=1e-6, msg=name)


def test_plain_trainer_ranks_draw_different_noise_and_stay_identical(ranks):
    runs = [r["plain_trainer"] for r in ranks]
    assert [r["world_size"] for r in runs] == [2, 2]
    assert [s for s, _ in runs[0]["seeds"]] == [s for s, _ in runs[1]["seeds"]] == [0, 1]
    assert all(a != b for (_, a), (_, b) in zip(runs[0]["seeds"], runs[1]["seeds"], strict=True))
    for name, p in runs[0]["params"].items():
        assert torch.equal(p, runs[1]["params"][name]), name
