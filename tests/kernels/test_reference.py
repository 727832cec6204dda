"""The torch reference of the noise stream: Philox known answers, the lane/bit layout, bf16 rounding."""

import pytest
import torch

from symnoise_trl.kernels import philox4x32, rademacher
from symnoise_trl.kernels.reference import store_rounding, symnoise_reference

# Random123 kat_vectors, philox4x32 with 10 rounds: (counter, key, expected output).
KNOWN_ANSWERS = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]  # fmt: skip


@pytest.mark.parametrize("counter, key, expected", KNOWN_ANSWERS)
def test_philox_known_answers(counter, key, expected):
    words = philox4x32(*(torch.tensor([c]) for c in counter), *key)
    assert tuple(int(w) for w in words) == expected


def test_philox_is_vectorised_over_counters():
    c0 = torch.tensor([0, 0xFFFFFFFF, 0x243F6A88])
    c1 = torch.tensor([0, 0xFFFFFFFF, 0x85A308D3])
    words = philox4x32(c0, c1, torch.tensor(0), torch.tensor(0), 7, 9)
    for i in range(3):
        single = philox4x32(c0[i : i + 1], c1[i : i + 1], torch.tensor(0), torch.tensor(0), 7, 9)
        assert [int(w[i]) for w in words] == [int(w) for w in single]


def test_rademacher_shape_dtype_values():
    eps = rademacher(37, 300, seed=5)
    assert eps.shape == (37, 300) and eps.dtype == torch.int8
    assert set(eps.unique().tolist()) == {-1, 1}
    assert rademacher(0, 5, 1).shape == (0, 5) and rademacher(4, 0, 1).shape == (4, 0)


@pytest.mark.parametrize("seed", [0, 12345, 2**40 + 17, 2**63 - 1])
def test_rademacher_follows_the_design_layout(seed):
    # Element (n, j) is bit j & 31 of word (j >> 5) & 3 of Philox(counter=(n, j >> 7, 0, 0), key=(seed lo, seed hi)).
    eps = rademacher(5, 300, seed)
    k0, k1 = seed & 0xFFFFFFFF, seed >> 32
    for n, j in [(0, 0), (0, 31), (0, 32), (1, 95), (2, 127), (3, 128), (4, 200), (4, 299)]:
        words = philox4x32(torch.tensor([n]), torch.tensor([j >> 7]), torch.tensor(0), torch.tensor(0), k0, k1)
        bit = (int(words[(j >> 5) & 3]) >> (j & 31)) & 1
        assert int(eps[n, j]) == (1 if bit else -1)


def test_rademacher_prefix_is_stable():
    # The signs of (n, j) do not depend on the tensor's extent: a trainer can rely on them per token.
    assert torch.equal(rademacher(10, 1000, 3)[:4, :130], rademacher(4, 130, 3))


def integer_round_to_bfloat16(v: torch.Tensor) -> torch.Tensor:
    """The kernel's bf16 rounding, on the integer bits (int64 to stay clear of overflow); NaN -> 0x7FC0."""
    b = v.view(torch.int32).to(torch.int64) & 0xFFFFFFFF
    rounded = (b + 0x7FFF + ((b >> 16) & 1)) >> 16
    out = torch.where((b & 0x7FFFFFFF) > 0x7F800000, 0x7FC0, rounded)
    return torch.where(out >= 0x8000, out - 0x10000, out).to(torch.int16)


def test_store_rounding_matches_integer_rounding():
    torch.manual_seed(0)
    special = [0.0, -0.0, 1.0, -1.0, 3.3895e38, -3.3895e38, 3.4e38, float("inf"), float("-inf"), 1e-40, -1e-45]
    ties = torch.tensor([0x3F808000, 0x3F818000, 0x3F80FFFF, 0x7F7FFFFF], dtype=torch.int32).view(torch.float32)
    v = torch.cat(
        [torch.randn(100_000) * 10.0 ** torch.randint(-30, 30, (100_000,)).float(), torch.tensor(special), ties]
    )
    nans = torch.tensor([0x7FC00000, 0xFFC00001 - 2**32, 0x7F800001, 0x7FFFFFFF], dtype=torch.int32)
    v = torch.cat([v, nans.view(torch.float32)])
    assert torch.equal(store_rounding(v, torch.bfloat16).view(torch.int16), integer_round_to_bfloat16(v))


@pytest.mark.parametrize("dtype, nan_bits", [(torch.float32, 0x7FC00000), (torch.float16, 0x7E00)])
def test_store_rounding_writes_one_nan_pattern(dtype, nan_bits):
    v = torch.tensor([0x7FC00000, 0xFFC00001 - 2**32, 0x7F800001, 0x7FFFFFFF, 0x3F800000], dtype=torch.int32)
    out = store_rounding(v.view(torch.float32), dtype).view(torch.int32 if dtype == torch.float32 else torch.int16)
    assert out[:4].tolist() == [nan_bits] * 4 and out[4].item() != nan_bits


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(n_rows=-1, dim=4, seed=0), "n_rows"),
        (dict(n_rows=2, dim=1.5, seed=0), "dim"),
        (dict(n_rows=2, dim=4, seed=-1), "seed"),
        (dict(n_rows=2, dim=4, seed=2**63), "seed"),
        (dict(n_rows=2**32 + 1, dim=4, seed=0), "n_rows"),
    ],
)
def test_rademacher_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        rademacher(**kwargs)


def test_rademacher_rejects_non_int_seed():
    with pytest.raises(TypeError, match="seed"):
        rademacher(2, 4, 1.0)


def test_reference_of_a_row_slice_names_its_first_row():
    x, scale = torch.randn(40, 300), torch.rand(40)
    whole = symnoise_reference(x, scale, 77, "both")
    for start in (0, 13, 38):
        part = symnoise_reference(x[start : start + 2], scale[start : start + 2], 77, "both", first_row=start)
        assert torch.equal(part, whole[:, start : start + 2])
