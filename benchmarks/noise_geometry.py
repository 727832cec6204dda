"""The geometry behind the paper's Lemmas 1-3 and Figures 1-5, measured numerically.

Mean L2 norm of n random vectors in dimension d, as ratios to the uniform noise's: Gaussian/Uniform and
Bernoulli (+-1)/Uniform, with the unit-parameter distributions of the paper (U(-1, 1), N(0, 1), +-1), where both
ratios tend to sqrt(3) as d grows; and the same for this project's noises at one alpha
(symnoise_trl.noise.one_sided), which are RMS-matched, so the ratios tend to 1. Two sweeps: against dimension
(1-4096, 256 points, n = 256 vectors) and against the number of vectors (64-256, d = 4096). Writes
benchmarks/results/noise_geometry.csv and two plots.

    python benchmarks/noise_geometry.py
"""

import argparse
import math

import numpy as np
import torch

from symnoise_trl.noise.one_sided import one_sided_noise
from symnoise_trl.noise.seeds import seed_tensor
from symnoise_trl.research.report import pyplot, table

from common import RESULTS, write_csv

ALPHA, LENGTH = 5.0, 64  # any alpha and L: the matched noises share one RMS


def mean_norms(dim: int, n_vectors: int, seed: int, matched: bool) -> dict[str, float]:
    """Mean L2 norm of `n_vectors` draws in dimension `dim` per distribution."""
    generator = torch.Generator().manual_seed(seed)
    if matched:
        x = torch.zeros(n_vectors, dim)
        scale = torch.full((n_vectors,), ALPHA / math.sqrt(3 * LENGTH * dim))
        draws = {
            name: one_sided_noise(x, scale, seed_tensor(seed), name) for name in ("uniform", "gaussian", "rademacher")
        }
    else:
        draws = {
            "uniform": torch.rand(n_vectors, dim, generator=generator) * 2 - 1,
            "gaussian": torch.randn(n_vectors, dim, generator=generator),
            "rademacher": torch.randint(0, 2, (n_vectors, dim), generator=generator).float() * 2 - 1,
        }
    return {name: v.norm(dim=1).mean().item() for name, v in draws.items()}


def ratios(dim: int, n_vectors: int, seed: int, matched: bool) -> dict:
    norms = mean_norms(dim, n_vectors, seed, matched)
    return {
        "dim": dim,
        "n_vectors": n_vectors,
        "rms_matched": matched,
        "gaussian_over_uniform": norms["gaussian"] / norms["uniform"],
        "bernoulli_over_uniform": norms["rademacher"] / norms["uniform"],
    }


def dimensions(points: int = 256) -> list[int]:
    """At least `points` distinct dimensions from 1 to 4096, geometrically spaced (integers repeat at the low end)."""
    n = points
    while len(dims := sorted({int(round(d)) for d in np.geomspace(1, 4096, n)})) < points:
        n += 8
    return dims


def sweep_dimension(n_vectors: int = 256, points: int = 256, seed: int = 0) -> list[dict]:
    dims = dimensions(points)
    return [ratios(d, n_vectors, seed + i, matched) for matched in (False, True) for i, d in enumerate(dims)]


def sweep_vectors(dim: int = 4096, seed: int = 0) -> list[dict]:
    return [ratios(dim, n, seed + n, matched) for matched in (False, True) for n in range(64, 257, 16)]


def plot(rows: list[dict], x: str, path) -> bool:
    plt = pyplot()
    if plt is None:
        return False
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    for ax, matched in zip(axes, (False, True), strict=True):
        part = [r for r in rows if r["rms_matched"] == matched]
        for key, label in (("gaussian_over_uniform", "Gaussian / Uniform"), ("bernoulli_over_uniform",
                                                                               "Bernoulli / Uniform")):  # fmt: skip
            ax.plot([r[x] for r in part], [r[key] for r in part], label=label)
        ax.axhline(math.sqrt(3), color="grey", linestyle=":", label="sqrt(3)")
        ax.axhline(1.0, color="grey", linestyle="--", label="1")
        ax.set_xscale("log" if x == "dim" else "linear")
        ax.set_xlabel("dimension d" if x == "dim" else "number of vectors (d = 4096)")
        ax.set_title("RMS-matched (this project, same alpha)" if matched else "unit parameters (paper's lemmas)")
    axes[0].set_ylabel("ratio of mean L2 norms")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    by_dim, by_vectors = sweep_dimension(seed=args.seed), sweep_vectors(seed=args.seed)
    path = write_csv("noise_geometry.csv", [{"sweep": "dimension", **r} for r in by_dim]
                     + [{"sweep": "vectors", **r} for r in by_vectors])  # fmt: skip
    plot(by_dim, "dim", RESULTS / "noise_geometry_dimension.png")
    plot(by_vectors, "n_vectors", RESULTS / "noise_geometry_vectors.png")
    print(f"CSV: {path.name}; plots: noise_geometry_dimension.png, noise_geometry_vectors.png")
    picks = [r for r in by_dim if r["dim"] in (1, 2, 16, 256, 4096)]
    print(table(picks, ["dim", "n_vectors", "rms_matched", "gaussian_over_uniform", "bernoulli_over_uniform"]))
    print(f"sqrt(3) = {math.sqrt(3):.4f}")


if __name__ == "__main__":
    main()
