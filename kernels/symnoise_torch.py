"""Kernels: the torch backend of the SymNoise op, the reference's bits in fewer passes over memory.

What every CPU, MPS and non-Triton run executes. It computes what `reference.symnoise_reference` computes, bit for
bit (docs/noise-stream.md), and differs in how:
- The signs are gathered as fp32 +-1 and each half is one `addcmul` (x + s * eps: s * eps is exact, so a fused
  multiply-add rounds the same single addition), then one round-to-nearest-even store to x.dtype.
- On a CPU it works in blocks of rows of about BLOCK_ELEMENTS elements, so the fp32 intermediates stay in cache and
  their memory is reused: a fresh multi-MB tensor costs its page faults, which made the one-shot reference slower
  than eager Algorithm 2 in bf16. The blocks run on torch's thread pool, or on worker threads that each take a
  contiguous share of the rows with the pool at one thread (robust on a busy machine), whichever is timed faster
  (`FasterPath`). Elsewhere one block is the whole tensor (a kernel launch).
- Scale-0 rows and NaN are fixed up afterwards. On a CPU only where they occur (reading a CPU tensor costs no device
  sync); on other devices with a pass that needs no value on the host.
"""

import os
import time
from concurrent.futures import ThreadPoolExecutor, wait

import torch

from .reference import CANONICAL_NAN_BITS, INT_VIEW, bits_of_bytes, sign_bytes, signs_from_bytes

# NOTE: 2**17 fp32 elements (512 KiB) per block. At 2048 x 4096 on 2 CPU threads this op took 75 ms (bf16) and
# 84 ms (fp32) against 157 and 111 ms for the whole tensor at once, and 197 / 365 ms for eager Algorithm 2.
BLOCK_ELEMENTS = 1 << 17


def symnoise_torch(
    x2d: torch.Tensor,
    scale: torch.Tensor | None,
    scale_value: float,
    seed: int,
    half: str,
    host_reads: bool | None = None,
    out_shape: tuple[int, ...] | None = None,
) -> torch.Tensor:
    """The op on a contiguous (N, d) tensor: (2, N, d) for half="both", else (N, d), or that memory allocated in
    `out_shape`. `scale` is an fp32 (N,) tensor, or None for `scale_value` on every row. `host_reads` (default: on a
    CPU) lets the fix-ups read values on the host to skip work; without it nothing is read back (no device sync)."""
    n_rows, dim = x2d.shape
    device, dtype = x2d.device, x2d.dtype
    host_reads = device.type == "cpu" if host_reads is None else host_reads
    halves = [h for h in ("plus", "minus") if half in ("both", h)]
    result = torch.empty(out_shape or ((2,) if half == "both" else ()) + (n_rows, dim), dtype=dtype, device=device)
    out = result.view(len(halves), n_rows, dim)  # written through this view; `result` is returned
    if out.numel() == 0:
        return result
    if scale is None:
        scale = torch.full((n_rows,), scale_value, dtype=torch.float32, device=device)
    signed_scale = {"plus": scale[:, None], "minus": (-scale)[:, None]}  # x - s*eps = x + (-s)*eps, exactly
    unit_table = (bits_of_bytes(device) * 2 - 1).to(torch.float32)

    def fill(start: int, stop: int, rows_per_block: int) -> None:
        """Rows [start, stop) of every half: their signs (one Philox call per 128 elements, for all the rows at
        once), then the arithmetic in blocks of `rows_per_block` rows."""
        byte_values = sign_bytes(stop - start, dim, seed, device, first_row=start)
        for block in range(start, stop, rows_per_block):
            end = min(block + rows_per_block, stop)
            xf = x2d[block:end].float()  # fp32 input: a view, no copy
            eps = signs_from_bytes(byte_values[block - start : end - start], dim, unit_table)
            for i, h in enumerate(halves):
                target = out[i, block:end]
                if dtype == torch.float32:
                    torch.addcmul(xf, eps, signed_scale[h][block:end], out=target)
                else:
                    target.copy_(torch.addcmul(xf, eps, signed_scale[h][block:end]))  # one rounding, at the store

    if device.type == "cpu":
        kind = (1 << max(n_rows - 1, 0).bit_length(), dim, dtype, len(halves))  # rows rounded up to a power of 2
        _on_cpu_threads(fill, n_rows, max(BLOCK_ELEMENTS // dim, 1), kind)
    else:
        fill(0, n_rows, n_rows)  # one kernel launch per op: no blocks
    _keep_zero_scale_rows(out, x2d, scale, host_reads)
    _canonical_nan(out, x2d, host_reads)
    return result


def _on_cpu_threads(fill, n_rows: int, rows_per_block: int, key: tuple) -> None:
    """`fill(start, stop, rows_per_block)` over the rows on a CPU, by the faster of two paths for inputs like this
    one (`key`): torch's thread pool, or as many Python worker threads as the pool has, each with its own share of
    the rows and the pool at one thread meanwhile (torch releases the GIL in its ops)."""
    pool_threads = torch.get_num_threads()
    threads = min(pool_threads, -(-n_rows // rows_per_block))  # no more threads than blocks
    if threads <= 1:
        fill(0, n_rows, rows_per_block)
        return
    workers = FASTER_PATH.workers_for(key)
    start = time.perf_counter()
    if workers:
        _on_worker_threads(fill, n_rows, rows_per_block, threads, pool_threads)
    else:
        fill(0, n_rows, rows_per_block)
    FASTER_PATH.record(key, workers, time.perf_counter() - start)


def _on_worker_threads(fill, n_rows: int, rows_per_block: int, threads: int, pool_threads: int) -> None:
    per_thread = -(-n_rows // threads)
    shares = [(start, min(start + per_thread, n_rows), rows_per_block) for start in range(0, n_rows, per_thread)]
    # A worker thread does not inherit the caller's autograd state (the op runs below autograd, whose formula is
    # registered with it): without this its torch calls would record a graph, or write into an inference tensor.
    inference = torch.is_inference_mode_enabled()

    def run(share):
        with torch.inference_mode() if inference else torch.no_grad():
            fill(*share)

    torch.set_num_threads(1)  # torch's pool: also what the worker threads take on their first op
    try:
        futures = [_workers(len(shares)).submit(run, share) for share in shares]
        wait(futures)  # all of them, also when one fails: none may still write into the output after the return
        for future in futures:
            future.result()
    finally:
        torch.set_num_threads(pool_threads)


class FasterPath:
    """Which CPU path is faster for inputs of one kind: torch's thread pool, or worker threads.

    NOTE: it depends on the machine's load. On torch's pool each of the op's many small torch calls (Philox rounds,
    then ~10 calls per cache-sized block) is a parallel region that waits for every pool thread: on 2 threads beside
    one spinning process per core, a call at 2048 x 4096 took 214 ms in bf16 against eager Algorithm 2's 176, where
    worker threads with one wait per call took 82 ms against 158 (benchmarks/cpu_load.py). Idle, the pool is the
    faster one (25 ms against 39 in bf16). Both give the same bits, so the choice is timed: each path twice on the
    first calls of a kind, then the faster by its best recent time, and the other once every REPROBE calls, as the
    load changes."""

    REPROBE = 64

    def __init__(self):
        self.kinds: dict[tuple, dict] = {}  # key -> {"calls": n, True: [seconds, ...], False: [seconds, ...]}

    def workers_for(self, key: tuple) -> bool:
        kind = self.kinds.setdefault(key, {"calls": 0, True: [], False: []})
        kind["calls"] += 1
        for path in (True, False):
            if len(kind[path]) < 2:  # the first of each warms up (the worker pool starts)
                return path
        faster = min(kind[True]) <= min(kind[False])  # of the last two: one slow sample does not flip the choice
        return not faster if kind["calls"] % self.REPROBE == 0 else faster

    def record(self, key: tuple, workers: bool, seconds: float) -> None:
        times = self.kinds[key][workers]
        times.append(seconds)
        del times[:-2]


FASTER_PATH = FasterPath()


_POOL: list[tuple[int, ThreadPoolExecutor]] = []  # at most one (size, pool), grown to the most shares asked for


def _workers(threads: int) -> ThreadPoolExecutor:
    """The worker pool, with at least `threads` threads."""
    if not _POOL or _POOL[0][0] < threads:
        if _POOL:
            _POOL.pop()[1].shutdown(wait=False)
        _POOL.append((threads, ThreadPoolExecutor(threads, thread_name_prefix="symnoise")))
    return _POOL[0][1]


# A forked child inherits the pool's bookkeeping but not its threads: it makes its own.
os.register_at_fork(after_in_child=_POOL.clear)


def _keep_zero_scale_rows(out: torch.Tensor, x2d: torch.Tensor, scale: torch.Tensor, host_reads: bool) -> None:
    """Rows with scale 0 as x itself: x + 0.0 turns -0.0 into +0.0."""
    keep = scale == 0
    if host_reads:
        rows = keep.nonzero().flatten()
        if rows.numel():
            out[:, rows] = x2d[rows]
    else:
        torch.where(keep[:, None], x2d, out, out=out)


def _canonical_nan(out: torch.Tensor, x2d: torch.Tensor, host_reads: bool) -> None:
    """Every NaN as the dtype's one pattern (torch's vectorised bf16 store writes 0xFFFF, x86 keeps payloads). The
    output is NaN only where x is, so a CPU checks x first."""
    if host_reads and not bool(torch.isnan(x2d).any()):
        return
    bits = out.view(INT_VIEW[out.dtype])
    bits.masked_fill_(torch.isnan(out), CANONICAL_NAN_BITS[out.dtype])
