"""Research: evaluate a trained model (generations, the paper's response metrics, held-out loss, AlpacaEval export).

    symnoise-evaluate --model outputs/quickstart                      # the quickstart's held-out tasks
    symnoise-evaluate --model my-model --prompts prompts.jsonl --output_dir evals/my-model
    symnoise-evaluate --model my-model --prompts sharegpt --chat_template --max_length 128 --sensitivity_alphas 2,5,10

Writes metrics.json, generations.jsonl and alpaca_eval.json to --output_dir: by default `eval/` inside a local model
folder, or `eval/<model name>` in the current folder for a Hub model.

Prompts are JSON lines (or a JSON list) with "prompt" or "instruction", and optionally "completion" (the reference
answer: enables held-out loss and exact match). The response metrics are those of the paper's Table 5 (after NEFTune's
evaluation); their exact definitions are in the docstrings below. `--prompts sharegpt` takes held-out ShareGPT
conversations (`cli/sharegpt.py`, the sharegpt extra); `--sensitivity_alphas` adds how far the held-out loss moves
along noise directions (`sensitivity.py`, docs/sensitivity.md).
"""

import argparse
import json
import math
from collections import Counter
from pathlib import Path

import torch

from ..cli import sharegpt
from ..hf.internals import import_bitsandbytes_quietly
from ..quickstart.tasks import DATA_DIR, is_correct
from . import sensitivity


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
    """Rows with "prompt" (or "instruction", copied to "prompt") and optionally "completion"; "sharegpt" (not a file
    of that name): the first exchange of each held-out ShareGPT conversation (`cli/sharegpt.py`)."""
    if str(path) == sharegpt.NAME and not Path(path).exists():
        return sharegpt.heldout_prompts()
    if not Path(path).is_file():
        raise ValueError(f"{path}: no such prompts file (JSON lines or a JSON list, or {sharegpt.NAME})")
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


def scored_example(tokenizer, prompt: str, completion: str, max_length: int | None = None) -> tuple[list[int], int]:
    """The token ids of prompt + completion + EOS, cut to `max_length` tokens, and the prompt's length in tokens (the
    completion's tokens are those after it). Tokenized as one text; where a token would straddle the boundary (the
    prompt's tokens are not a prefix of the whole's), the two parts are tokenized apart instead."""
    prompt_ids = tokenizer(prompt)["input_ids"]
    ending = completion + (tokenizer.eos_token or "")
    full_ids = tokenizer(prompt + ending)["input_ids"]
    if full_ids[: len(prompt_ids)] != prompt_ids:
        full_ids = prompt_ids + tokenizer(ending, add_special_tokens=False)["input_ids"]
    return full_ids[:max_length], len(prompt_ids)


def check_options(max_length=None, sensitivity_alphas=(), sensitivity_seed=0) -> tuple:
    """`evaluate`'s options, checked where they enter (the function and both commands): a ValueError names the
    option and what it takes. Returns them normalised (the alphas as a list of floats)."""
    if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 2):
        raise ValueError(f"max_length must be an int >= 2 (a prompt token and an answer token) or None, got "
                         f"{max_length!r}")  # fmt: skip
    alphas = sensitivity.check_alphas(sensitivity_alphas) if sensitivity_alphas else []
    return max_length, alphas, sensitivity.check_seed(sensitivity_seed)


@torch.no_grad()
def heldout_loss(model, tokenizer, prompts: list[str], completions: list[str], batch_size: int = 16,
                 max_length: int | None = None) -> float:  # fmt: skip
    """Mean negative log-likelihood per completion token given its prompt (the model as it is: no noise), over each
    prompt + completion cut to `max_length` tokens."""
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(prompts), batch_size):
        rows = [scored_example(tokenizer, prompt, completion, max_length)
                for prompt, completion in zip(prompts[start : start + batch_size],
                                              completions[start : start + batch_size], strict=True)]  # fmt: skip
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


def evaluate(model_path, prompts=None, *, output_dir=None, max_new_tokens: int = 32, batch_size: int = 32,
             limit: int | None = None, chat_template: bool = False, generator: str | None = None,
             max_length: int | None = None, sensitivity_alphas=(), sensitivity_seed: int = 0) -> dict:  # fmt: skip
    """Generate for every prompt, compute the metrics, and write metrics.json, generations.jsonl and
    alpaca_eval.json into `output_dir` (when given). Returns the metrics. `prompts`: rows as `load_prompts` returns
    them, or what it takes (default: the quickstart held-out split).

    `max_length` leaves out the prompts of `max_length` tokens or more (counted in "n_prompts_too_long") and cuts
    each scored prompt + completion to `max_length` tokens. `sensitivity_alphas` (one or more alphas > 0) adds
    "sensitivity", the loss's first-order and curvature terms along noise directions (`sensitivity.py`), on the rows
    with a reference completion, with noise seeds from `sensitivity_seed`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    max_length, sensitivity_alphas, sensitivity_seed = check_options(max_length, sensitivity_alphas, sensitivity_seed)
    rows = prompts if isinstance(prompts, list) else load_prompts(prompts or DATA_DIR / "test.jsonl")
    rows = [dict(row) for row in rows[:limit]]
    if sensitivity_alphas and not any("completion" in row for row in rows):
        raise ValueError("sensitivity_alphas needs prompts with a reference 'completion' (the loss it perturbs)")
    try:
        from peft import AutoPeftModelForCausalLM

        is_adapter = (Path(model_path) / "adapter_config.json").exists()
    except ImportError:
        is_adapter = False
    # NOTE: the sensitivity terms are differences of losses at s ~ 1e-2 per element: in bf16 they would sit at the
    # rounding floor, so a model stored in bf16 is measured in float32.
    dtype = torch.float32 if sensitivity_alphas else "auto"
    model = (AutoPeftModelForCausalLM if is_adapter else AutoModelForCausalLM).from_pretrained(model_path, dtype=dtype)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    texts = _prompt_texts(tokenizer, rows, chat_template)
    too_long = 0
    if max_length is not None:
        kept = [i for i, text in enumerate(texts) if len(tokenizer(text)["input_ids"]) < max_length]
        too_long = len(rows) - len(kept)
        rows, texts = [rows[i] for i in kept], [texts[i] for i in kept]
        if sensitivity_alphas and not any("completion" in row for row in rows):
            raise ValueError(f"sensitivity_alphas: no prompt with a reference 'completion' is shorter than "
                             f"max_length={max_length} tokens")  # fmt: skip
    responses = generate(model, tokenizer, texts, max_new_tokens=max_new_tokens, batch_size=batch_size)
    metrics = {"model": str(model_path), "n_prompts": len(rows), **response_metrics(responses)}
    if max_length is not None:
        metrics.update(max_length=max_length, n_prompts_too_long=too_long)
    with_reference = [i for i, row in enumerate(rows) if "completion" in row]
    if with_reference:
        references = [rows[i] for i in with_reference]
        scored_prompts, completions = [texts[i] for i in with_reference], [r["completion"] for r in references]
        metrics["heldout_loss"] = heldout_loss(model, tokenizer, scored_prompts, completions, batch_size, max_length)
        correct = [is_correct(row, responses[i]) for row, i in zip(references, with_reference, strict=True)]
        metrics["exact_match"] = sum(correct) / len(correct)
        if sensitivity_alphas:
            examples = [scored_example(tokenizer, p, c, max_length)
                        for p, c in zip(scored_prompts, completions, strict=True)]  # fmt: skip
            metrics["sensitivity"] = sensitivity.measure(model, examples, sensitivity_alphas, sensitivity_seed)
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
    parser.add_argument("--prompts", default=None,
                        help="JSONL/JSON prompts, or sharegpt (held-out ShareGPT first turns: the sharegpt extra); "
                        "default: the quickstart held-out split")  # fmt: skip
    parser.add_argument("--output_dir", default=None,
                        help="where to write metrics.json, generations.jsonl, alpaca_eval.json (default: MODEL/eval "
                        "for a local model, eval/<name> for a Hub model)")  # fmt: skip
    parser.add_argument("--max_new_tokens", type=int, default=32)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--limit", type=int, default=None, help="evaluate the first N prompts only")
    parser.add_argument("--chat_template", action="store_true", help="wrap each prompt in the tokenizer's template")
    parser.add_argument("--generator", default=None, help="name in the AlpacaEval export (default: model folder)")
    parser.add_argument(
        "--max_length",
        type=int,
        default=None,
        help="leave out prompts of this many tokens or more, and score prompt + completion cut to it",
    )
    parser.add_argument(
        "--sensitivity_alphas",
        default=None,
        metavar="ALPHAS",
        help="comma-separated alphas, e.g. 1,5,10: measure how the held-out loss moves along noise "
        "directions at each (first-order and curvature terms; needs reference completions)",
    )
    parser.add_argument("--sensitivity_seed", type=int, default=0, help="the noise directions' seed, in [0, 2**63)")
    args = parser.parse_args(argv)
    try:
        alphas = sensitivity.parse_alphas(args.sensitivity_alphas) if args.sensitivity_alphas is not None else []
        check_options(args.max_length, alphas, args.sensitivity_seed)
    except ValueError as error:  # it names the option: "max_length must be ..."
        parser.error(f"--{error}")
    output_dir = Path(args.output_dir or default_output_dir(args.model))
    options = dict(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, limit=args.limit,
                   chat_template=args.chat_template, max_length=args.max_length, sensitivity_alphas=alphas,
                   sensitivity_seed=args.sensitivity_seed)  # fmt: skip
    try:
        rows = load_prompts(args.prompts or DATA_DIR / "test.jsonl")  # a missing extra is named before models load
    except ValueError as error:  # no such file, a row without a prompt, ShareGPT without its package
        parser.error(str(error))
    metrics = evaluate(args.model, rows, output_dir=output_dir, generator=args.generator, **options)
    print(f"Evaluated {args.model}: {summary_line(metrics)}")
    if "sensitivity" in metrics:
        print(sensitivity.table(metrics["sensitivity"]))
    print(f"Wrote metrics.json, generations.jsonl and alpaca_eval.json to {output_dir}")
    if args.baseline is not None:
        before = evaluate(args.baseline, rows, output_dir=output_dir / "baseline", **options)
        print(f"Evaluated the baseline {args.baseline}: {summary_line(before)}")
        if "sensitivity" in before:
            print(sensitivity.table(before["sensitivity"]))
        print(comparison(before, metrics, args.baseline_name))


if __name__ == "__main__":
    main()
