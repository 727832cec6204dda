"""The evaluation metrics against values computed by hand, held-out loss against a direct computation, and the
evaluate entry point end to end (generations, AlpacaEval export)."""

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from symnoise_trl.quickstart.tiny_model import tiny_model_path
from symnoise_trl.research.evaluate import (
    alpaca_eval_records,
    default_output_dir,
    evaluate,
    heldout_loss,
    load_prompts,
    log_diversity,
    main,
    repetition_rate,
    response_metrics,
    summary_line,
)


@pytest.fixture(autouse=True)
def model_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("SYMNOISE_TRL_CACHE", str(tmp_path_factory.getbasetemp() / "symnoise_cache"))


def test_metrics_by_hand():
    responses = ["a b a b", "c d"]
    # 2-grams: ab ba ab | cd -> 4 in all, 3 distinct; 3-grams: aba bab (distinct); 4-grams: abab.
    assert repetition_rate(responses, 2) == pytest.approx(0.25)
    assert repetition_rate(responses, 3) == 0.0 and repetition_rate(responses, 4) == 0.0
    assert log_diversity(responses) == pytest.approx(-math.log(1 - 0.75))
    metrics = response_metrics(responses)
    assert metrics == pytest.approx(
        {"mean_chars": 5.0, "mean_whitespace_tokens": 3.0, "rep2_percent": 25.0, "log_diversity": math.log(4)}
    )


def test_metric_edge_cases():
    assert repetition_rate(["one", ""], 2) == 0.0  # no 2-gram at all
    assert log_diversity(["x y z w", "p q"]) == math.inf  # nothing repeats
    # n-grams do not cross responses: "b a" only exists across the boundary.
    assert repetition_rate(["a b", "a b"], 2) == pytest.approx(0.5)
    assert response_metrics([])["mean_chars"] == 0.0


def test_heldout_loss_is_the_completion_token_nll():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = tiny_model_path()
    model, tokenizer = AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    prompts, completions = ["What is 2 + 2?", "Sort ascending: 3 1 2"], [" 4", " 1 2 3"]
    expected_total, expected_count = 0.0, 0
    with torch.no_grad():
        for prompt, completion in zip(prompts, completions, strict=True):
            n_prompt = len(tokenizer(prompt)["input_ids"])
            ids = tokenizer(prompt + completion + tokenizer.eos_token, return_tensors="pt")["input_ids"]
            log_probs = model(input_ids=ids).logits[0, :-1].log_softmax(-1)
            targets = ids[0, 1:]
            for position in range(n_prompt - 1, ids.shape[1] - 1):
                expected_total -= log_probs[position, targets[position]].item()
                expected_count += 1
    got = heldout_loss(model, tokenizer, prompts, completions, batch_size=2)
    assert got == pytest.approx(expected_total / expected_count, rel=1e-4)


def test_load_prompts_formats(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"prompt": "p1", "completion": " c"}\n{"instruction": "p2"}\n')
    (tmp_path / "b.json").write_text(json.dumps([{"instruction": "q"}]))
    assert [r["prompt"] for r in load_prompts(tmp_path / "a.jsonl")] == ["p1", "p2"]
    assert load_prompts(tmp_path / "b.json")[0]["prompt"] == "q"
    (tmp_path / "c.jsonl").write_text('{"text": "x"}\n')
    with pytest.raises(ValueError, match="needs a 'prompt' or an 'instruction'"):
        load_prompts(tmp_path / "c.jsonl")


def test_alpaca_eval_records():
    records = alpaca_eval_records([{"prompt": "hi"}], ["hello"], "my-model")
    assert records == [{"instruction": "hi", "output": "hello", "generator": "my-model"}]


def test_evaluate_end_to_end(tmp_path):
    metrics = evaluate(tiny_model_path(), output_dir=tmp_path, limit=8, max_new_tokens=4, batch_size=4)
    assert metrics["n_prompts"] == 8 and 0.0 <= metrics["exact_match"] <= 1.0 and metrics["heldout_loss"] > 0
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["heldout_loss"] == pytest.approx(metrics["heldout_loss"]) and saved["n_prompts"] == 8
    generations = [json.loads(line) for line in (tmp_path / "generations.jsonl").read_text().splitlines()]
    assert len(generations) == 8 and all("response" in g and "completion" in g for g in generations)
    exported = json.loads((tmp_path / "alpaca_eval.json").read_text())
    assert [set(r) for r in exported] == [{"instruction", "output", "generator"}] * 8
    assert exported[0]["generator"] == tiny_model_path().name


def test_the_command_writes_into_the_model_folder_by_default(tmp_path, capsys):
    model = tmp_path / "my-model"
    shutil.copytree(tiny_model_path(), model)
    main(["--model", str(model), "--limit", "4", "--max_new_tokens", "2", "--batch_size", "4"])
    out = capsys.readouterr().out
    metrics = json.loads((model / "eval" / "metrics.json").read_text())
    assert (model / "eval" / "alpaca_eval.json").exists() and (model / "eval" / "generations.jsonl").exists()
    assert f"Evaluated {model}: {summary_line(metrics)}" in out
    assert f"to {model / 'eval'}" in out
    assert summary_line(metrics).startswith(f"held-out loss {metrics['heldout_loss']:.3f} | exact match ")


def test_a_baseline_is_evaluated_beside_the_model_with_a_verdict(tmp_path, capsys):
    trained = tmp_path / "trained"
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path())
    with torch.no_grad():  # a different model than the baseline: its own metrics
        model.lm_head.weight.mul_(0.5)
    model.save_pretrained(trained)
    AutoTokenizer.from_pretrained(tiny_model_path()).save_pretrained(trained)
    main(["--model", str(trained), "--baseline", str(tiny_model_path()), "--baseline_name", "untrained", "--limit",
          "4", "--max_new_tokens", "2", "--batch_size", "4"])  # fmt: skip
    out = capsys.readouterr().out.splitlines()
    after = json.loads((trained / "eval" / "metrics.json").read_text())
    before = json.loads((trained / "eval" / "baseline" / "metrics.json").read_text())
    assert after["heldout_loss"] != before["heldout_loss"]
    table = out[out.index(next(line for line in out if line.split() == ["untrained", "trained"])) :]
    assert table[1].split() == ["held-out", "loss", f"{before['heldout_loss']:.3f}", f"{after['heldout_loss']:.3f}"]
    expected = (
        f"Verdict: after training, held-out loss {after['heldout_loss']:.2f} "
        f"(untrained: {before['heldout_loss']:.2f}); exact answers to {after['exact_match']:.1%} of the 4 held-out "
        f"prompts (untrained: {before['exact_match']:.1%})."
    )
    assert table[-1] == expected


def test_default_output_dir_of_a_hub_model():
    assert default_output_dir("org/some-model") == Path("eval") / "org__some-model"


def test_a_lora_adapter_folder_is_evaluated_with_its_adapter(tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = AutoModelForCausalLM.from_pretrained(tiny_model_path())
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path())
    torch.manual_seed(0)
    lora = LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False)  # not zero
    adapted = get_peft_model(base, lora)
    adapted.save_pretrained(tmp_path / "adapter")  # adapter_config.json + weights, as symnoise-sft --use_peft saves
    tokenizer.save_pretrained(tmp_path / "adapter")
    adapted.merge_and_unload().save_pretrained(tmp_path / "merged")
    tokenizer.save_pretrained(tmp_path / "merged")
    with_adapter = evaluate(tmp_path / "adapter", limit=8, max_new_tokens=4)
    merged = evaluate(tmp_path / "merged", limit=8, max_new_tokens=4)
    plain = evaluate(tiny_model_path(), limit=8, max_new_tokens=4)
    assert with_adapter["heldout_loss"] == pytest.approx(merged["heldout_loss"], rel=1e-5)
    assert with_adapter["heldout_loss"] != pytest.approx(plain["heldout_loss"], rel=1e-3)  # the adapter was applied
