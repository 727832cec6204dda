"""Static check of the SymNoise kernel for real GPUs, without a GPU.

Compiles the kernel with `triton.compile` for sm_80 and sm_90 and reports, per dtype and output mode: registers,
spills (stack/local bytes), shared memory, how many global loads/stores are 16-byte vectors, and Philox calls per
output element (from the PTX). Writes benchmarks/results/static_check.csv and prints a Markdown table.

    python benchmarks/static_check.py [--n-rows 16384 --dim 4096]
"""

import argparse
import os

if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
    raise SystemExit("static_check compiles the kernel: run it without TRITON_INTERPRET=1")

from symnoise_trl.research.report import table  # noqa: E402

from common import write_csv  # noqa: E402
from static_compile import kernel_report  # noqa: E402

COLUMNS = ["capability", "dtype", "half", "block_rows", "block_chunks", "num_warps", "registers", "stack", "local",
           "shared", "global_loads_16B", "global_loads", "global_stores_16B", "global_stores", "elements_per_thread",
           "philox_calls_per_thread", "philox_per_element"]  # fmt: skip


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-rows", type=int, default=16384, help="rows (tokens) the launch config is chosen for")
    parser.add_argument("--dim", type=int, default=4096, help="hidden size the launch config is chosen for")
    args = parser.parse_args(argv)
    rows = [
        kernel_report(capability, dtype, half=half, n_rows=args.n_rows, dim=args.dim)
        for capability in (80, 90)
        for dtype in ("bfloat16", "float16", "float32")
        for half in ("both", "plus")
    ]
    path = write_csv("static_check.csv", rows)
    print(f"SymNoise kernel compiled for sm_80/sm_90, launch config for {args.n_rows} x {args.dim} (CSV: {path.name})")
    print(table(rows, COLUMNS))
    return rows


if __name__ == "__main__":
    main()
