"""Research: evaluate a trained model (generations, the paper's response metrics, held-out loss, AlpacaEval export).

    symnoise-evaluate --model outputs/quickstart                      # the quickstart's held-out tasks
    symnoise-evaluate --model my-model --prompts prompts.jsonl --output_dir evals/my-model

Writes metrics.json, generations.jsonl and alpaca_eval.json to --output_dir: by default `eval/` inside a local model
folder, or `eval/<model name>` in the current folder for a Hub model.

Prompts are JSON lines (or a JSON list) with "prompt" or "instruction", and optionally "completion" (the reference
answer: enables held-out loss and exact match). The response metrics are those of the paper's Table 5 (after NEFTune's
evaluation); their exact definitions are in the docstrings below.
"""

import argparse
import json
import math
from collections import Counter
from pathlib import Path

import torch

from ..hf.internals import import_bitsandbytes_quietly
from ..quickstart.tasks import DATA_DIR, is_correct


def whitespace_tokens(text: str) -> list[str]:
    return text.split()


def repetition_rate(responses: list[str], n: int) -> float:
    """rep-n = 1 - (distinct n-grams) / (all n-grams), over the whitespace tokens of all responses pooled (n-grams
    never cross two responses). 0.0 when there is no n-gram."""
    grams = Counter()
    for response in responses:
        tokens = whitespace_tokens(response)
        grams.update(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
    total = sum(grams.values())
    return 0.0 if total == 0 else 1.0 - len(grams) / total


def log_diversity(responses: list[str]) -> float:
    """-ln(1 - diversity), diversity = prod over n = 2, 3, 4 of (1 - rep-n): larger is more diverse; inf when no
    2-, 3- or 4-gram repeats."""
    diversity = math.prod(1.0 - repetition_rate(responses, n) for n in (2, 3, 4))
    return math.inf if diversity >= 1.0 else -math.log(1.0 - diversity)


def response_metrics(responses: list[str]) -> dict[str, float]:
    """The paper's Table 5 metrics: mean length in characters and in whitespace tokens, 2-gram repetition rate in
    percent (rep-2 x 100), and log-diversity."""
    count = max(len(responses), 1)
    return {
        "mean_chars": sum(len(r) for r in responses) / count,
        "mean_whitespace_tokens": sum(len(whitespace_tokens(r)) for r in responses) / count,
        "rep2_percent": 100.0 * repetition_rate(responses, 2),
        "log_diversity": log_diversity(responses),
    }


def load_prompts(path) -> list[dict]:
    """Rows with "prompt" (or "instruction", copied to "prompt") and optionally "completion"."""
    text = Path(path).read_text()
    if text.lstrip().startswith("["):
        rows = json.loads(text)
    else:
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    for row in rows:
        if "prompt" not in row:
            if "instruction" not in row:
                raise ValueError(f"{path}: every row needs a 'prompt' or an 'instruction', got keys {sorted(row)}")
            row["prompt"] = row["instruction"]
    return rows


def _prompt_texts(tokenizer, rows, chat_template: bool) -> list[str]:
    if not chat_template:
        return [row["prompt"] for row in rows]
    return [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": row["prompt"]}], tokenize=False, add_generation_prompt=True
        )  # fmt: skip
        for row in rows
    ]


@torch.no_grad()
def generate(model, tokenizer, prompts: list[str], *, max_new_tokens: int = 64, batch_size: int = 16,
             do_sample: bool = False, progress: bool = True) -> list[str]:  # fmt: skip
    """Batched generation (greedy by default) with left padding; returns the decoded new text of each prompt."""
    from tqdm.auto import tqdm

    model.eval()
    padding_side, tokenizer.padding_side = tokenizer.padding_side, "left"
    responses = []
    try:
        for start in tqdm(range(0, len(prompts), batch_size), desc="Generating", disable=not progress):
            batch = tokenizer(prompts[start : start + batch_size], return_tensors="pt", padding=True).to(model.device)
            output = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=do_sample,
                                    pad_token_id=tokenizer.pad_token_id)  # fmt: skip
            new_tokens = output[:, batch["input_ids"].shape[1] :]
            responses += tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
    finally:
        tokenizer.padding_side = padding_side
    return responses


@torch.no_grad()
def heldout_loss(model, tokenizer, prompts: list[str], completions: list[str], batch_size: int = 16) -> float:
    """Mean negative log-likelihood per completion token given its prompt (the model as it is: no noise)."""
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(prompts), batch_size):
        rows = []
        for prompt, completion in zip(prompts[start : start + batch_size], completions[start : start + batch_size],
                                      strict=True):  # fmt: skip
            prompt_ids = tokenizer(prompt)["input_ids"]
            full_ids = tokenizer(prompt + completion + (tokenizer.eos_token or ""))["input_ids"]
            rows.append((full_ids, len(prompt_ids)))
        width = max(len(ids) for ids, _ in rows)
        input_ids = torch.full((len(rows), width), tokenizer.pad_token_id)
        labels = torch.full((len(rows), width), -100)
        for i, (ids, prompt_length) in enumerate(rows):
            input_ids[i, : len(ids)] = torch.tensor(ids)
            labels[i, prompt_length : len(ids)] = torch.tensor(ids[prompt_length:])
        lengths = torch.tensor([len(ids) for ids, _ in rows])
        attention_mask = (torch.arange(width)[None] < lengths[:, None]).long()
        logits = model(input_ids=input_ids.to(model.device), attention_mask=attention_mask.to(model.device)).logits
        targets = labels[:, 1:].to(model.device)
        nll = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(), targets.flatten(),
                                                ignore_index=-100, reduction="sum")  # fmt: skip
        total += nll.item()
        count += int((targets != -100).sum())
    return total / max(count, 1)


def alpaca_eval_records(rows: list[dict], responses: list[str], generator: str) -> list[dict]:
    """AlpacaEval's model-outputs format: [{"instruction", "output", "generator"}]."""
    return [{"instruction": row["prompt"], "output": response, "generator": generator}
            for row, response in zip(rows, responses, strict=True)]  # fmt: skip


def evaluate(model_path, prompts_path=None, *, output_dir=None, max_new_tokens: int = 32, batch_size: int = 32,
             limit: int | None = None, chat_template: bool = False, generator: str | None = None) -> dict:  # fmt: skip
    """Generate for every prompt, compute the metrics, and write metrics.json, generations.jsonl and
    alpaca_eval.json into `output_dir` (when given). Returns the metrics."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        from peft import AutoPeftModelForCausalLM

        is_adapter = (Path(model_path) / "adapter_config.json").exists()
    except ImportError:
        is_adapter = False
    model = (AutoPeftModelForCausalLM if is_adapter else AutoModelForCausalLM).from_pretrained(model_path)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    rows = load_prompts(prompts_path or DATA_DIR / "test.jsonl")[:limit]
    prompts = _prompt_texts(tokenizer, rows, chat_template)
    responses = generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size)
    metrics = {"model": str(model_path), "n_prompts": len(rows), **response_metrics(responses)}
    with_reference = [i for i, row in enumerate(rows) if "completion" in row]
    if with_reference:
        references = [rows[i] for i in with_reference]
        metrics["heldout_loss"] = heldout_loss(model, tokenizer, [prompts[i] for i in with_reference],
                                               [r["completion"] for r in references], batch_size)  # fmt: skip
        correct = [is_correct(row, responses[i]) for row, i in zip(references, with_reference, strict=True)]
        metrics["exact_match"] = sum(correct) / len(correct)
    if output_dir is not None:
        out = Path(output_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        with open(out / "generations.jsonl", "w") as f:
            f.writelines(json.dumps({**row, "response": r}) + "\n" for row, r in zip(rows, responses, strict=True))
        records = alpaca_eval_records(rows, responses, generator or Path(model_path).name)
        (out / "alpaca_eval.json").write_text(json.dumps(records, indent=2) + "\n")
    return metrics


def default_output_dir(model: str) -> Path:
    """`eval/` inside a local model folder; `eval/<name>` here for a Hub model ("org/name" -> "org__name")."""
    return Path(model) / "eval" if Path(model).is_dir() else Path("eval") / model.replace("/", "__")


def summary_line(metrics: dict) -> str:
    """One line for people: held-out loss and exact match (with references), response length, prompt count."""
    parts = []
    if "heldout_loss" in metrics:
        parts += [f"held-out loss {metrics['heldout_loss']:.3f}", f"exact match {100 * metrics['exact_match']:.1f}%"]
    parts += [f"mean response {metrics['mean_whitespace_tokens']:.1f} words", f"{metrics['n_prompts']} prompts"]
    return " | ".join(parts)


def comparison(baseline: dict, trained: dict, baseline_name: str = "before") -> str:
    """The held-out metrics of a model before and after training side by side, and a verdict line."""
    rows = [("held-out loss", "heldout_loss", "{:.3f}"), ("exact match", "exact_match", "{:.1%}"),
            ("mean response (words)", "mean_whitespace_tokens", "{:.1f}")]  # fmt: skip
    rows = [(label, key, fmt) for label, key, fmt in rows if key in baseline and key in trained]
    width = max(len(label) for label, _, _ in rows)
    lines = [f"{'':{width}}  {baseline_name:>12}  {'trained':>12}"]
    lines += [f"{label:{width}}  {fmt.format(baseline[key]):>12}  {fmt.format(trained[key]):>12}"
              for label, key, fmt in rows]  # fmt: skip
    if "heldout_loss" in trained and "heldout_loss" in baseline:
        lines.append(
            f"Verdict: after training, held-out loss {trained['heldout_loss']:.2f} ({baseline_name}: "
            f"{baseline['heldout_loss']:.2f}); exact answers to {trained['exact_match']:.1%} of the "
            f"{trained['n_prompts']} held-out prompts ({baseline_name}: {baseline['exact_match']:.1%})."
        )
    return "\n".join(lines)


def main(argv=None) -> None:
    import_bitsandbytes_quietly()  # before anything imports peft: the command prints its own lines only
    parser = argparse.ArgumentParser(prog="symnoise-evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a trained model or LoRA adapter folder (or Hub name)")
    parser.add_argument("--baseline", default=None,
                        help="the model before training (e.g. the base model): evaluated too, and shown side by side "
                        "with --model, with a verdict line; its files go to OUTPUT_DIR/baseline")  # fmt: skip
    parser.add_argument("--baseline_name", default="baseline", help="what to call --baseline in the comparison")
    parser.add_argument("--prompts", default=None, help="JSONL/JSON prompts; default: the quickstart held-out split")
    parser.add_argument("--output_dir", default=None,
                        help="where to write metrics.json, generations.jsonl, alpaca_eval.json (default: MODEL/eval "
                        "for a local model, eval/<name> for a Hub model)")  # fmt: skip
    parser.add_argument("--max_new_tokens", type=int, default=32)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--limit", type=int, default=None, help="evaluate the first N prompts only")
    parser.add_argument("--chat_template", action="store_true", help="wrap each prompt in the tokenizer's template")
    parser.add_argument("--generator", default=None, help="name in the AlpacaEval export (default: model folder)")
    args = parser.parse_args(argv)
    output_dir = Path(args.output_dir or default_output_dir(args.model))
    options = dict(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, limit=args.limit,
                   chat_template=args.chat_template)  # fmt: skip
    metrics = evaluate(args.model, args.prompts, output_dir=output_dir, generator=args.generator, **options)
    print(f"Evaluated {args.model}: {summary_line(metrics)}")
    print(f"Wrote metrics.json, generations.jsonl and alpaca_eval.json to {output_dir}")
    if args.baseline is not None:
        before = evaluate(args.baseline, args.prompts, output_dir=output_dir / "baseline", **options)
        print(f"Evaluated the baseline {args.baseline}: {summary_line(before)}")
        print(comparison(before, metrics, args.baseline_name))


if __name__ == "__main__":
    main()
