"""DeepSpeed ZeRO-2 on two CPU processes (torchrun, gloo): SymNoise trains in the one-pass mode with different noise
per rank and identical replicas; the two-pass mode is refused at start-up. DeepSpeed is in the dev extra (not a
dependency of the package): CI's lock and newest lanes run this."""

import os
import subprocess
import sys

import pytest
import torch

pytest.importorskip("deepspeed", reason="DeepSpeed is not installed here (the dev extra installs it)")
WORKER = os.path.join(os.path.dirname(os.path.dirname(__file__)), "workers", "deepspeed_worker.py")


def launch(out, mode):
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29543", WORKER,
         str(out), mode],
        env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    return [torch.load(out / f"{mode}_rank{r}.pt") for r in (0, 1)]


def test_zero2_one_pass_trains_with_noise_per_rank(tmp_path):
    ranks = launch(tmp_path, "one_pass")
    assert len(ranks[0]["seeds"]) == len(ranks[1]["seeds"]) == 2
    assert all(a != b for (_, a), (_, b) in zip(ranks[0]["seeds"], ranks[1]["seeds"], strict=True))
    for name, p in ranks[0]["params"].items():
        assert torch.equal(p, ranks[1]["params"][name]), name


def test_zero2_refuses_the_two_pass_mode(tmp_path):
    for rank in launch(tmp_path, "two_pass"):
        assert rank["refused"].startswith("`symnoise_two_pass=True` runs two backward passes")
