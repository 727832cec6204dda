"""Research: how far the held-out loss moves when the input embeddings move, the curvature SymNoise claims to flatten.

The paper (Section 4) reads SymNoise as curvature regularisation: training on X + s*eps and X - s*eps asks for
f(X + s eps) = f(X - s eps). This measures, per held-out example (the model in eval mode, no dropout), with X the
embeddings of prompt + reference completion (T tokens of width d), a fixed direction u of RMS 1 and the training
noise's scale s = alpha / sqrt(3 T d):

    L0 = loss(X),  L+ = loss(X + s u),  L- = loss(X - s u)
    first-order term  |L+ - L-| / 2          = s |grad L . u| + O(s^3)      (the odd terms of the Taylor series)
    curvature term    (L+ + L- - 2 L0) / 2   = s^2 u' H u / 2 + O(s^4)      (the even terms)

for two directions: "rademacher" (+-1 signs, SymNoise's and the paper's "Bernoulli") and "uniform" (sqrt(3) U(-1, 1),
NEFTune's), both from `noise.one_sided.unit_noise` with the example's own seed (`example_seed`), the same u at every
alpha. The loss is the negative log-likelihood of the completion's tokens:
  per token     the terms of each completion token's loss, averaged over every scored token of every example;
  per sequence  the terms of each example's mean completion loss, averaged over the examples.
(Within one example the per-sequence first-order term is at most the mean of its tokens': opposite token gradients
cancel in the mean.) The spec, and what the terms say about training: docs/sensitivity.md.
"""

from collections.abc import Callable

import torch

from ..noise.one_sided import unit_noise
from ..noise.plan import noise_scale
from ..noise.seeds import seed_digest

DIRECTIONS = ("rademacher", "uniform")
TERMS = ("first_order", "curvature")


def example_seed(seed: int, index: int) -> int:
    """The noise seed of example `index` (0-based) of a measurement with `seed`: a 64-bit BLAKE2b digest of the two,
    in [0, 2**63). A digest rather than `seed * 2**32 + index`: torch's CPU generator (the uniform direction) keeps
    only a seed's low 32 bits."""
    return seed_digest(seed, index, person=b"sensitivity")


def _key(alpha: float) -> str:
    return f"{alpha:g}"


def check_alphas(alphas) -> list[float]:
    """The alphas of a measurement: distinct finite numbers > 0, at least one (a ValueError naming them otherwise)."""
    values = list(alphas)
    if not values or any(isinstance(a, bool) or not isinstance(a, int | float) or not 0 < a < float("inf")
                         for a in values):  # fmt: skip
        raise ValueError(f"sensitivity_alphas must be one or more finite numbers > 0, got {values!r}")
    keys = [_key(a) for a in values]
    if len(set(keys)) < len(keys):
        raise ValueError(f"sensitivity_alphas must be distinct (to 6 significant digits), got {values!r}")
    return [float(a) for a in values]


def parse_alphas(text: str) -> list[float]:
    """Comma-separated alphas, as the command lines take them ("2,5,10"), checked."""
    try:
        values = [float(a) for a in text.split(",")]
    except ValueError:
        raise ValueError(f"sensitivity_alphas must be comma-separated numbers, e.g. 2,5,10; got {text!r}") from None
    return check_alphas(values)


def check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise ValueError(f"sensitivity_seed must be an int in [0, 2**63), got {seed!r}")
    return seed


@torch.no_grad()
def example_terms(token_losses: Callable[[torch.Tensor], torch.Tensor], embeds: torch.Tensor, alphas: list[float],
                  seed: int) -> dict:  # fmt: skip
    """The terms of one example. `token_losses` maps R copies of its embeddings, (R, T, d), to the losses of its K
    scored tokens, (R, K); `embeds` is (T, d). Returns {"clean": (K,) losses L0, "scales": {alpha: s}, (direction,
    alpha): {"half_difference": (L+ - L-) / 2, "curvature": (L+ + L- - 2 L0) / 2}}, each (K,), per token."""
    length, dim = embeds.shape
    units = {d: unit_noise(d, length, dim, seed, embeds.device).to(embeds.dtype) for d in DIRECTIONS}
    scales = {alpha: noise_scale(torch.tensor(length), alpha, dim).item() for alpha in alphas}
    copies = [embeds]
    for alpha in alphas:
        for direction in DIRECTIONS:
            step = scales[alpha] * units[direction]
            copies += [embeds + step, embeds - step]
    losses = token_losses(torch.stack(copies))
    terms = {"clean": losses[0], "scales": scales}
    for i, (alpha, direction) in enumerate((a, d) for a in alphas for d in DIRECTIONS):
        plus, minus = losses[1 + 2 * i], losses[2 + 2 * i]
        terms[direction, alpha] = {"half_difference": (plus - minus) / 2,
                                   "curvature": (plus + minus - 2 * losses[0]) / 2}  # fmt: skip
    return terms


def causal_lm_token_losses(model, input_ids: torch.Tensor, prompt_length: int) -> Callable:
    """`token_losses` for a causal LM and one tokenized example (1-D `input_ids`): the NLL of each token after the
    first `prompt_length` (the completion), in float32 or wider."""
    targets = input_ids[prompt_length:]

    def token_losses(embeds: torch.Tensor) -> torch.Tensor:
        logits = model(inputs_embeds=embeds).logits[:, prompt_length - 1 : -1]
        logits = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
        return -logits.log_softmax(-1).gather(-1, targets.expand(len(embeds), -1)[..., None])[..., 0]

    return token_losses


class _Totals:
    def __init__(self):
        self.token_sum, self.tokens, self.sequence_sum, self.sequences = 0.0, 0, 0.0, 0

    def add(self, per_token: torch.Tensor, per_sequence: torch.Tensor) -> None:
        self.token_sum += per_token.double().sum().item()
        self.tokens += per_token.numel()
        self.sequence_sum += per_sequence.double().item()
        self.sequences += 1

    def means(self) -> tuple[float, float]:
        return self.token_sum / max(self.tokens, 1), self.sequence_sum / max(self.sequences, 1)


def summarise(per_example: list[dict], alphas: list[float]) -> dict:
    """The measurement's means over examples (`example_terms` results): JSON-ready, alphas as keys like "5"."""
    clean = _Totals()
    totals = {(d, a, t): _Totals() for d in DIRECTIONS for a in alphas for t in TERMS}
    for terms in per_example:
        clean.add(terms["clean"], terms["clean"].mean())
        for direction in DIRECTIONS:
            for alpha in alphas:
                half_difference, curvature = (terms[direction, alpha][k] for k in ("half_difference", "curvature"))
                # Per sequence: the terms of the mean loss, |mean(L+ - L-)| / 2 and the mean curvature.
                totals[direction, alpha, "first_order"].add(half_difference.abs(), half_difference.mean().abs())
                totals[direction, alpha, "curvature"].add(curvature, curvature.mean())
    result = {"alphas": alphas, "n_sequences": clean.sequences, "n_tokens": clean.tokens,
              "clean_loss_token": clean.means()[0], "clean_loss_sequence": clean.means()[1]}  # fmt: skip
    for direction in DIRECTIONS:
        result[direction] = {}
        for alpha in alphas:
            row = {}
            for term in TERMS:
                row[f"{term}_token"], row[f"{term}_sequence"] = totals[direction, alpha, term].means()
            result[direction][_key(alpha)] = row
    return result


@torch.no_grad()
def measure(model, examples: list[tuple[list[int], int]], alphas, seed: int = 0, progress: bool = True) -> dict:
    """The measurement on a causal LM (put in eval mode) over tokenized examples (token ids, prompt length), one
    forward of 1 + 4 * len(alphas) copies per example. Returns `summarise`'s dict."""
    from tqdm.auto import tqdm

    alphas, seed = check_alphas(alphas), check_seed(seed)
    model.eval()
    embed = model.get_input_embeddings()
    per_example = []
    for index, (ids, prompt_length) in enumerate(tqdm(examples, desc="Sensitivity", disable=not progress)):
        if not 0 < prompt_length < len(ids):
            raise ValueError(f"example {index} has {prompt_length} prompt tokens of {len(ids)}: the measurement needs "
                             "at least one prompt token and one answer token")  # fmt: skip
        input_ids = torch.tensor(ids, device=model.device)
        token_losses = causal_lm_token_losses(model, input_ids, prompt_length)
        per_example.append(example_terms(token_losses, embed(input_ids), alphas, example_seed(seed, index)))
    return summarise(per_example, alphas)


def table(result: dict) -> str:
    """The measurement as a text table, a row per direction and alpha."""
    lines = [f"{'direction':<10} {'alpha':>6}  {'first-order/token':>17}  {'curvature/token':>15}  "
             f"{'first-order/seq':>15}  {'curvature/seq':>13}"]  # fmt: skip
    for direction in DIRECTIONS:
        for alpha, row in result[direction].items():
            cells = [f"{row[f'{term}_{unit}']:.3e}" for unit in ("token", "sequence") for term in TERMS]
            lines.append(f"{direction:<10} {alpha:>6}  {cells[0]:>17}  {cells[1]:>15}  {cells[2]:>15}  {cells[3]:>13}")
    return "\n".join(lines)
