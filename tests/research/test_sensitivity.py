"""The sensitivity measurement (`symnoise_trl/research/sensitivity.py`): the terms against their closed forms on a
linear and a quadratic toy loss, their order in s on a real (tiny) transformer, the directions it uses, and the
measurement through `symnoise-evaluate` against the held-out loss computed apart."""

import json
import math

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from symnoise_trl.kernels.reference import rademacher
from symnoise_trl.quickstart.tiny_model import tiny_model_path
from symnoise_trl.research import sensitivity
from symnoise_trl.research.evaluate import evaluate, heldout_loss, main, scored_example

LENGTH, DIM, TOKENS = 7, 12, 5


@pytest.fixture(autouse=True)
def model_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("SYMNOISE_TRL_CACHE", str(tmp_path_factory.getbasetemp() / "symnoise_cache"))


def directions(seed: int) -> dict[str, torch.Tensor]:
    """The two unit directions, written from their definitions: Philox signs, and sqrt(3) U(-1, 1) from torch's
    generator."""
    generator = torch.Generator().manual_seed(seed)
    uniform = (torch.rand((LENGTH, DIM), generator=generator) * 2 - 1) * math.sqrt(3)
    return {"rademacher": rademacher(LENGTH, DIM, seed).double(), "uniform": uniform.double()}


def scale(alpha: float) -> float:
    return alpha / math.sqrt(3 * LENGTH * DIM)


def toy(kind: str):
    """A loss per token k of the embeddings E (flattened to e): linear <w_k, e> + b_k, or quadratic e' A_k e."""
    generator = torch.Generator().manual_seed(1)
    n = LENGTH * DIM
    weights = torch.randn((TOKENS, n), generator=generator, dtype=torch.float64)
    matrices = torch.randn((TOKENS, n, n), generator=generator, dtype=torch.float64)
    matrices = (matrices + matrices.transpose(1, 2)) / 2
    if kind == "linear":
        return weights, lambda e: e.flatten(1) @ weights.T + 0.5
    return matrices, lambda e: torch.einsum("rn,knm,rm->rk", e.flatten(1), matrices, e.flatten(1))


@pytest.mark.parametrize("direction", sensitivity.DIRECTIONS)
def test_linear_loss_has_its_closed_form(direction):
    weights, losses = toy("linear")
    embeds = torch.randn((LENGTH, DIM), dtype=torch.float64)
    alphas = [1.0, 2.0, 8.0]
    terms = sensitivity.example_terms(losses, embeds, alphas, seed=11)
    u = directions(11)[direction].flatten()
    for alpha in alphas:
        s = terms["scales"][alpha]
        assert s == pytest.approx(scale(alpha), rel=1e-7)  # fp32's rounding of the scale
        expected = s * (weights @ u)  # (L+ - L-) / 2 = s <w_k, u>; nothing of second order
        torch.testing.assert_close(terms[direction, alpha]["half_difference"], expected, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(terms[direction, alpha]["curvature"], torch.zeros(TOKENS, dtype=torch.float64),
                                   rtol=0, atol=1e-12)  # fmt: skip
    summary = sensitivity.summarise([terms], alphas)
    for alpha in alphas:
        row, s = summary[direction][f"{alpha:g}"], terms["scales"][alpha]
        assert row["first_order_token"] == pytest.approx((s * (weights @ u)).abs().mean().item(), rel=1e-10)
        assert row["first_order_sequence"] == pytest.approx(abs((s * (weights @ u)).mean().item()), rel=1e-10)
    # The first-order term grows like s: 8x the alpha, 8x the term.
    first = [summary[direction][f"{a:g}"]["first_order_token"] for a in alphas]
    assert first[2] / first[0] == pytest.approx(8.0, rel=1e-6)


@pytest.mark.parametrize("direction", sensitivity.DIRECTIONS)
def test_quadratic_loss_has_its_closed_form(direction):
    matrices, losses = toy("quadratic")
    embeds = torch.randn((LENGTH, DIM), dtype=torch.float64)
    e, u = embeds.flatten(), directions(5)[direction].flatten()
    alphas = [0.5, 1.0, 4.0]
    terms = sensitivity.example_terms(losses, embeds, alphas, seed=5)
    curvature = torch.einsum("n,knm,m->k", u, matrices, u)  # u' A_k u
    gradient = 2 * torch.einsum("n,knm,m->k", e, matrices, u)  # <grad, u> = 2 e' A_k u
    for alpha in alphas:
        s = terms["scales"][alpha]
        torch.testing.assert_close(terms[direction, alpha]["half_difference"], s * gradient, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(terms[direction, alpha]["curvature"], s**2 * curvature, rtol=1e-9, atol=1e-12)
    summary = sensitivity.summarise([terms], alphas)[direction]
    # Exactly s and s^2 here (a quadratic has no higher terms): 8x the alpha, 8x and 64x.
    assert summary["4"]["first_order_token"] / summary["0.5"]["first_order_token"] == pytest.approx(8, rel=1e-6)
    assert summary["4"]["curvature_token"] / summary["0.5"]["curvature_token"] == pytest.approx(64, rel=1e-6)


def test_every_example_and_seed_has_its_own_directions():
    seeds = {sensitivity.example_seed(seed, index) for seed in (0, 1, 2**40) for index in range(50)}
    assert len(seeds) == 150 and all(0 <= s < 2**63 for s in seeds)
    # torch's CPU generator keeps a seed's low 32 bits: the uniform direction must still change with the seed.
    low_bits = {s & 0xFFFFFFFF for s in seeds}
    assert len(low_bits) == 150
    first = [sensitivity.unit_noise("uniform", 2, 8, sensitivity.example_seed(seed, 0)) for seed in (0, 2**32)]
    assert not torch.equal(*first)


def test_examples_without_a_prompt_or_an_answer_token_are_refused():
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path())
    for example in (([5, 6, 7], 3), ([5, 6, 7], 0)):
        with pytest.raises(ValueError, match=r"example 0 has \d prompt tokens of 3: the measurement needs at least"):
            sensitivity.measure(model, [example], [5.0], progress=False)


def test_the_perturbations_are_the_training_noise_at_its_scale():
    seen = []

    def record(copies):
        seen.append(copies.clone())
        return copies.sum(-1)

    embeds = torch.zeros((LENGTH, DIM), dtype=torch.float64)
    sensitivity.example_terms(record, embeds, [2.0, 4.0], seed=3)
    (copies,) = seen
    # Order: clean, then per alpha and direction +s u, -s u.
    assert len(copies) == 1 + 2 * 2 * 2 and torch.equal(copies[0], embeds)
    unit = directions(3)
    for i, (alpha, direction) in enumerate((a, d) for a in (2.0, 4.0) for d in sensitivity.DIRECTIONS):
        plus, minus = copies[1 + 2 * i], copies[2 + 2 * i]
        torch.testing.assert_close(plus, scale(alpha) * unit[direction], rtol=1e-6, atol=0)
        assert torch.equal(minus, -plus)
        assert plus.pow(2).mean().sqrt().item() == pytest.approx(scale(alpha), rel=0.15)  # RMS alpha / sqrt(3 L d)
    assert torch.equal(copies[5], 2 * copies[1])  # the same direction at every alpha


def test_the_terms_are_first_and_second_order_on_a_transformer():
    # float64, small alphas: the leading terms dominate, so doubling alpha doubles the first-order term and
    # quadruples the curvature term (up to the next terms of the series).
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path(), dtype=torch.float64)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path())
    examples = [scored_example(tokenizer, "Sort ascending: 3 1 2\n", " 1 2 3"),
                scored_example(tokenizer, "What is 12 + 30?\n", " 42")]  # fmt: skip
    result = sensitivity.measure(model, examples, [0.01, 0.02], seed=0, progress=False)
    for direction in sensitivity.DIRECTIONS:
        small, large = result[direction]["0.01"], result[direction]["0.02"]
        for unit in ("token", "sequence"):
            assert large[f"first_order_{unit}"] / small[f"first_order_{unit}"] == pytest.approx(2, rel=0.02)
            assert large[f"curvature_{unit}"] / small[f"curvature_{unit}"] == pytest.approx(4, rel=0.05)
    n_tokens = sum(len(ids) - prompt for ids, prompt in examples)
    assert result["n_sequences"] == 2 and result["n_tokens"] == n_tokens
    prompts, completions = ["Sort ascending: 3 1 2\n", "What is 12 + 30?\n"], [" 1 2 3", " 42"]
    # heldout_loss takes the log-softmax in float32: equal to its rounding
    assert result["clean_loss_token"] == pytest.approx(heldout_loss(model, tokenizer, prompts, completions), rel=1e-6)


def test_symnoise_evaluate_reports_the_terms(tmp_path, capsys):
    prompts = tmp_path / "prompts.jsonl"
    rows = [{"prompt": "Sort ascending: 3 1 2\n", "completion": " 1 2 3"},
            {"prompt": "Reverse: abc\n", "completion": " cba" + " and more" * 20},  # cut to 24 tokens
            {"prompt": "x " * 40, "completion": " too long"}]  # fmt: skip
    prompts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    main(["--model", str(tiny_model_path()), "--prompts", str(prompts), "--output_dir", str(tmp_path / "eval"),
          "--sensitivity_alphas", "1,5", "--max_length", "24", "--max_new_tokens", "2"])  # fmt: skip
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["n_prompts"] == 2 and metrics["n_prompts_too_long"] == 1  # the 40-word prompt has 40+ tokens
    found = metrics["sensitivity"]
    assert found["alphas"] == [1.0, 5.0] and found["n_sequences"] == 2
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path())
    lengths = [len(tokenizer(r["prompt"])["input_ids"]) for r in rows[:2]]
    full = len(tokenizer(rows[0]["prompt"] + rows[0]["completion"] + tokenizer.eos_token)["input_ids"])
    assert found["n_tokens"] == (full - lengths[0]) + (24 - lengths[1])  # the second cut at --max_length
    assert found["clean_loss_token"] == pytest.approx(metrics["heldout_loss"], rel=1e-6)
    for direction in sensitivity.DIRECTIONS:
        assert set(found[direction]) == {"1", "5"}
        assert set(found[direction]["5"]) == {f"{t}_{u}" for t in sensitivity.TERMS for u in ("token", "sequence")}
        assert found[direction]["5"]["first_order_token"] > found[direction]["1"]["first_order_token"] > 0
    out = capsys.readouterr().out
    assert "first-order/token" in out and out.count("rademacher") == 2 and out.count("uniform") == 2


@pytest.mark.parametrize("bad", [[], [0.0], [-1.0], [math.inf], [math.nan], [True]])
def test_bad_alphas_are_refused_by_name(bad):
    with pytest.raises(ValueError, match="sensitivity_alphas must be one or more finite numbers > 0"):
        sensitivity.check_alphas(bad)
    with pytest.raises(ValueError, match="sensitivity_alphas must be distinct"):
        sensitivity.check_alphas([5, 5.0000001])  # the same key in metrics.json


def test_bad_options_are_refused_before_the_model_loads(tmp_path, capsys):
    for argv, expected in ((["--sensitivity_alphas", "0,5"], "--sensitivity_alphas must be one or more finite"),
                           (["--sensitivity_alphas", "five"], "--sensitivity_alphas must be comma-separated numbers"),
                           (["--sensitivity_alphas", "2,2.0"], "--sensitivity_alphas must be distinct"),
                           (["--sensitivity_seed", "-1"], "--sensitivity_seed must be an int in [0, 2**63)"),
                           (["--max_length", "1"], "--max_length must be an int >= 2"),
                           (["--prompts", str(tmp_path / "no.jsonl")], "no.jsonl: no such prompts file")):  # fmt: skip
        with pytest.raises(SystemExit) as exit_info:
            main(["--model", str(tmp_path / "not-loaded"), *argv])
        assert exit_info.value.code == 2 and expected in capsys.readouterr().err
    without_references = [{"prompt": "Say hi"}]
    with pytest.raises(ValueError, match="sensitivity_alphas needs prompts with a reference 'completion'"):
        evaluate(tmp_path / "not-loaded", without_references, sensitivity_alphas=[5])
