"""The torch backend (blocked, fix-ups afterwards) against the one-shot torch reference, bit for bit."""

import pytest
import torch

from symnoise_trl.kernels import symnoise
from symnoise_trl.kernels import symnoise_torch as torch_backend
from symnoise_trl.kernels.reference import symnoise_reference

from helpers.kernel_cases import DTYPES, SEED, assert_bit_equal, matrix_inputs, row_scales


def more_special_values(x: torch.Tensor) -> torch.Tensor:
    payloads = torch.tensor([0x7FA00000, 0xFFC00001 - 2**32], dtype=torch.int32).view(torch.float32)
    values = torch.cat([torch.tensor([-0.0, float("nan"), float("-inf"), 1e-40]), payloads]).to(x.dtype)
    x[0, : min(x.shape[1], 6)] = values[: min(x.shape[1], 6)]
    if x.shape[0] > 3:
        x[3] = -0.0  # a scale-0 row (row_scales zeroes every third) of negative zeros
    return x


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("half", ["both", "plus", "minus"])
@pytest.mark.parametrize("host_reads", [True, False], ids=["cpu_fixups", "sync_free_fixups"])
def test_torch_backend_equals_reference(dtype, half, host_reads, monkeypatch):
    # Blocks of 2 or 3 rows for the wide inputs: block boundaries and a partial last block are exercised.
    monkeypatch.setattr(torch_backend, "BLOCK_ELEMENTS", 512)
    for x in matrix_inputs(dtype, seed=1):
        x, n_rows = more_special_values(x), x.shape[0]
        for scale in (row_scales(n_rows), torch.full((n_rows,), 0.37), torch.zeros(n_rows)):
            got = torch_backend.symnoise_torch(x, scale, 0.0, SEED, half, host_reads=host_reads)
            assert_bit_equal(got, symnoise_reference(x, scale, SEED, half))
        got = torch_backend.symnoise_torch(x, None, 0.37, SEED, half, host_reads=host_reads)
        assert_bit_equal(got, symnoise_reference(x, torch.full((n_rows,), 0.37), SEED, half))


def test_block_size_does_not_change_the_output(monkeypatch):
    x = torch.randn(300, 257, dtype=torch.bfloat16)
    scale = row_scales(300)
    want = symnoise_reference(x, scale, SEED, "both")
    for block in (1, 257 * 7, 10**9):  # a row per block, 7 rows per block, one block
        monkeypatch.setattr(torch_backend, "BLOCK_ELEMENTS", block)
        assert_bit_equal(torch_backend.symnoise_torch(x, scale, 0.0, SEED, "both"), want)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_cpu_threads_share_the_rows_and_leave_the_pool_as_it_was(monkeypatch, threads):
    # Each of torch's intra-op threads runs its own share of the rows (the shares end mid-block for 3 threads).
    x = torch.randn(301, 130, dtype=torch.bfloat16)
    scale = row_scales(301)
    want = symnoise_reference(x, scale, SEED, "both")
    monkeypatch.setattr(torch_backend, "BLOCK_ELEMENTS", 130 * 16)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        assert_bit_equal(torch_backend.symnoise_torch(x, scale, 0.0, SEED, "both"), want)
        assert torch.get_num_threads() == threads
    finally:
        torch.set_num_threads(before)


def test_cpu_threads_under_autograd(monkeypatch):
    # The public op on a tensor that requires grad, split over two threads: the same bits, and the op's gradient.
    monkeypatch.setattr(torch_backend, "BLOCK_ELEMENTS", 64 * 8)
    x = torch.randn(40, 64, requires_grad=True)
    scale = row_scales(40)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        out = symnoise(x, scale, SEED, backend="torch")
    finally:
        torch.set_num_threads(before)
    assert_bit_equal(out.detach(), symnoise_reference(x.detach(), scale, SEED, "both"))
    out.sum().backward()
    assert torch.equal(x.grad, torch.full_like(x, 2.0))


def test_cpu_threads_under_inference_mode(monkeypatch):
    monkeypatch.setattr(torch_backend, "BLOCK_ELEMENTS", 64 * 8)
    x = torch.randn(40, 64)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with torch.inference_mode():
            out = symnoise(x, 0.1, SEED, backend="torch")
    finally:
        torch.set_num_threads(before)
    assert_bit_equal(out, symnoise_reference(x, torch.full((40,), 0.1), SEED, "both"))


@pytest.mark.parametrize("workers", [True, False], ids=["worker_threads", "torch_pool"])
def test_both_cpu_paths_give_the_same_bits(monkeypatch, workers):
    monkeypatch.setattr(torch_backend, "BLOCK_ELEMENTS", 130 * 16)
    monkeypatch.setattr(torch_backend.FASTER_PATH, "workers_for", lambda key: workers)
    x = torch.randn(301, 130, dtype=torch.bfloat16)
    scale = row_scales(301)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        got = torch_backend.symnoise_torch(x, scale, 0.0, SEED, "both")
    finally:
        torch.set_num_threads(before)
    assert_bit_equal(got, symnoise_reference(x, scale, SEED, "both"))


def test_the_faster_path_is_timed_and_retimed():
    chooser, key = torch_backend.FasterPath(), ("kind",)
    times = {True: 0.5, False: 0.2}  # the pool faster, as on an idle machine
    chosen = []
    for _ in range(2 * torch_backend.FasterPath.REPROBE):
        workers = chooser.workers_for(key)
        chosen.append(workers)
        chooser.record(key, workers, times[workers])
    assert chosen[:4] == [True, True, False, False]  # each path twice first
    assert chosen.count(True) == 2 + 2  # then the workers only when retimed, every REPROBE calls
    times = {True: 0.1, False: 0.2}  # the load changed: the workers are faster now
    for _ in range(torch_backend.FasterPath.REPROBE):
        workers = chooser.workers_for(key)
        chooser.record(key, workers, times[workers])
    assert chooser.workers_for(key) is True
