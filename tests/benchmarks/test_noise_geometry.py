"""The noise-geometry benchmark's limits: norm ratios sqrt(3) with unit parameters, 1 after RMS matching."""

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[2] / "benchmarks"))
import noise_geometry  # noqa: E402


@pytest.mark.parametrize("n_vectors", [64, 256])
def test_ratio_limits_in_high_dimension(n_vectors):
    raw = noise_geometry.ratios(4096, n_vectors, seed=1, matched=False)
    matched = noise_geometry.ratios(4096, n_vectors, seed=1, matched=True)
    for key in ("gaussian_over_uniform", "bernoulli_over_uniform"):
        assert raw[key] == pytest.approx(math.sqrt(3), rel=0.01)
        assert matched[key] == pytest.approx(1.0, rel=0.01)


def test_low_dimensions_differ_from_the_limit():
    # d = 1: E|g| / E|u| = sqrt(2 / pi) / (1 / 2) = 1.596 and |b| / E|u| = 2, not sqrt(3).
    raw = noise_geometry.ratios(1, 20_000, seed=2, matched=False)
    assert raw["gaussian_over_uniform"] == pytest.approx(2 * math.sqrt(2 / math.pi), rel=0.03)
    assert raw["bernoulli_over_uniform"] == pytest.approx(2.0, rel=0.03)


def test_dimension_sweep_covers_1_to_4096():
    dims = sorted({r["dim"] for r in noise_geometry.sweep_dimension(n_vectors=8, points=256)})
    assert dims[0] == 1 and dims[-1] == 4096 and len(dims) >= 256
