"""Speed of the SymNoise op against the paper's eager Algorithm 2, torch.compile of it, NEFTune's noise, and a copy.

Forward and backward, side by side in one run, over tokens x hidden size x dtype. Providers:
  symnoise  the op (`backend="auto"`: the fused Triton kernel on a GPU, the torch reference on a CPU)
  eager     Algorithm 2 in plain PyTorch: a random sign tensor, add, subtract, concatenate
  compile   torch.compile of `eager`
  neftune   transformers' NEFTune noise on the same X (one output: the incumbent's cost; forward only, its
            backward passes the gradient through untouched)
  copy      the roofline: read X once, write it twice (forward); read two grads, write their sum (backward)
GPU timings use triton.testing.do_bench; CPU timings a repeat-and-median timer (never the Triton interpreter).
Writes benchmarks/results/kernel_<device>.csv and a plot, and prints a table last.

    python benchmarks/kernel.py            # GPU: 2k-64k tokens; CPU: a smaller sweep
    python benchmarks/kernel.py --quick    # a few sizes
"""

import argparse
import math
import statistics
import time

import torch

from symnoise_trl.kernels import symnoise, triton_available
from symnoise_trl.research.report import pyplot, table

from common import RESULTS, device_name, device_slug, write_csv

if triton_available():
    import triton
    import triton.language as tl
else:  # a CPU-only torch without Triton: the copy roofline uses torch's copies
    triton = None

SEED = 1234
ALPHA = 5.0


def eager_algorithm2(x: torch.Tensor, scale: float) -> torch.Tensor:
    eps = torch.randint(0, 2, x.shape, device=x.device, dtype=x.dtype) * 2 - 1
    return torch.cat([x + scale * eps, x - scale * eps])


def neftune(x: torch.Tensor, scale: float) -> torch.Tensor:
    # transformers' neftune_post_forward_hook: alpha / sqrt(L d) uniform noise, one output
    return x + torch.zeros_like(x).uniform_(-scale, scale)


class _Duplicate(torch.autograd.Function):
    """Moves the bytes of the fused op and nothing else: forward reads x once and writes it twice."""

    @staticmethod
    def forward(ctx, x):
        out = torch.empty((2, *x.shape), dtype=x.dtype, device=x.device)
        if x.is_cuda and triton is not None:
            _copy_twice(x, out)
        else:
            out[0].copy_(x)
            out[1].copy_(x)
        return out

    @staticmethod
    def backward(ctx, grad):
        return grad[0] + grad[1]


copy_roofline = _Duplicate.apply


def _copy_twice(x, out):
    n = x.numel()
    _copy_twice_kernel[(triton.cdiv(n, 4096),)](x, out, n, BLOCK=4096, num_warps=8)


if triton is not None:  # defined once, at import: a kernel defined per call would be compiled per call

    @triton.jit
    def _copy_twice_kernel(x_ptr, out_ptr, n, BLOCK: tl.constexpr):
        offsets = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offsets < n
        v = tl.load(x_ptr + offsets, mask=mask)
        tl.store(out_ptr + offsets, v, mask=mask)
        tl.store(out_ptr + n + offsets, v, mask=mask)


def timer(fn, on_gpu: bool, repeats: int) -> tuple[float, float, float]:
    """(median, p20, p80) in milliseconds."""
    if on_gpu:
        import triton

        return tuple(triton.testing.do_bench(fn, quantiles=[0.5, 0.2, 0.8]))
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    quantiles = statistics.quantiles(times, n=10, method="inclusive")
    return statistics.median(times), quantiles[1], quantiles[7]


def providers(scale: float, compiled):
    return {
        "symnoise": lambda x: symnoise(x, scale, SEED),
        "eager": lambda x: eager_algorithm2(x, scale),
        "compile": lambda x: compiled(x, scale),
        "neftune": lambda x: neftune(x, scale),
        "copy": copy_roofline,
    }


def measure(tokens: int, hidden: int, dtype: torch.dtype, device: str, repeats: int, compiled) -> list[dict]:
    on_gpu = device == "cuda"
    x = torch.randn(tokens, hidden, device=device, dtype=dtype, requires_grad=True)
    scale = ALPHA / math.sqrt(3 * tokens * hidden)
    rows = []
    for name, fn in providers(scale, compiled).items():
        timings = [("forward", timer(lambda fn=fn: fn(x), on_gpu, repeats))]
        if name != "neftune":
            y = fn(x)
            grad = torch.randn_like(y)
            backward = lambda y=y, grad=grad: torch.autograd.grad(y, x, grad, retain_graph=True)  # noqa: E731
            timings.append(("backward", timer(backward, on_gpu, repeats)))
        for direction, (median, p20, p80) in timings:
            rows.append(dict(provider=name, direction=direction, tokens=tokens, hidden=hidden,
                             dtype=str(dtype).removeprefix("torch."), ms=median, ms_p20=p20, ms_p80=p80))  # fmt: skip
    # Bandwidth and ratios, measured side by side in this run.
    element_bytes = torch.tensor([], dtype=dtype).element_size()
    by_key = {(r["provider"], r["direction"]): r for r in rows}
    for r in rows:
        moved = tokens * hidden * element_bytes * (2 if r["provider"] == "neftune" else 3)  # elements read + written
        r["GB/s"] = moved / (r["ms"] * 1e-3) / 1e9
        r["% of copy"] = 100 * by_key[("copy", r["direction"])]["ms"] / r["ms"]
        r["x eager"] = by_key[("eager", r["direction"])]["ms"] / r["ms"]
        r["x compile"] = by_key[("compile", r["direction"])]["ms"] / r["ms"]
    return rows


def plot(rows: list[dict], device: str, path) -> bool:
    plt = pyplot()
    if plt is None:
        return False
    panels = sorted({(r["dtype"], r["direction"]) for r in rows})
    hiddens = sorted({r["hidden"] for r in rows})
    fig, axes = plt.subplots(len(panels), len(hiddens), figsize=(4 * len(hiddens), 3 * len(panels)), squeeze=False)
    for i, (dtype, direction) in enumerate(panels):
        for j, hidden in enumerate(hiddens):
            ax = axes[i][j]
            for provider in ("symnoise", "eager", "compile", "neftune", "copy"):
                points = sorted((r["tokens"], r["GB/s"]) for r in rows if (r["provider"], r["dtype"], r["direction"],
                                r["hidden"]) == (provider, dtype, direction, hidden))  # fmt: skip
                if points:
                    ax.plot(*zip(*points, strict=True), marker="o", label=provider,
                            linestyle="--" if provider == "copy" else "-")  # fmt: skip
            ax.set_xscale("log", base=2)
            ax.set_title(f"{direction}, {dtype}, d={hidden}", fontsize=9)
            ax.set_xlabel("tokens")
            ax.set_ylabel("GB/s")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"SymNoise op throughput - {device}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few sizes only")
    parser.add_argument("--repeats", type=int, default=7, help="CPU timer repeats")
    args = parser.parse_args(argv)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        tokens = [2048, 16384] if args.quick else [2048, 4096, 8192, 16384, 32768, 65536]
    else:
        tokens = [512] if args.quick else [512, 2048]
    hiddens = [4096] if args.quick else [2048, 4096, 8192]
    dtypes = [torch.bfloat16, torch.float32]
    compiled = torch.compile(eager_algorithm2, dynamic=True)

    name = device_name()
    slug = device_slug(name) + ("_quick" if args.quick else "")
    rows = []
    for dtype in dtypes:
        for hidden in hiddens:
            for n in tokens:
                rows += [{**r, "device": name} for r in measure(n, hidden, dtype, device, args.repeats, compiled)]
                csv_path = write_csv(f"kernel_{slug}.csv", rows)  # after each size: a run cut short keeps its rows
                print(f"measured {n} x {hidden} {dtype}", flush=True)
    plotted = plot(rows, name, RESULTS / f"kernel_{slug}.png")
    print(f"\nDevice: {name}. CSV: {csv_path.name}" + (f", plot: kernel_{slug}.png" if plotted else ""))
    summary = [r for r in rows if r["provider"] == "symnoise"]
    print(table(summary, ["direction", "tokens", "hidden", "dtype", "ms", "GB/s", "% of copy", "x eager",
                          "x compile"]))  # fmt: skip
    return rows


if __name__ == "__main__":
    main()
