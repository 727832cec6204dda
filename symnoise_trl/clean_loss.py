"""Core: the clean loss, the loss of a training batch without noise, measured every N steps beside the noisy loss.

The logged `loss` of a SymNoise run is the loss of the noisy copies, which a plain run's loss cannot be compared
with. With `symnoise_clean_loss_steps=N` the trainer also runs each micro-batch of every N-th optimizer step (the
first one included) through the model without noise - no gradient, one extra forward of B rows - and logs at the
next logging step:
  clean_loss       the token-mean loss of those batches without noise (the models' causal LM loss: next-token
                   cross entropy over the labels that are not -100), over all ranks
  clean_loss_gap   the logged training loss of the same steps minus clean_loss: what the noise adds
It changes no gradient, no noise and no random state (the forward runs under a forked RNG): a run with it trains
bit-identically to one without it.
"""

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100
_LABEL_KEYS = ("labels", "shift_labels")


def _clean_nll(model, inputs: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of the next-token negative log-likelihood over the labelled tokens, their count) of `inputs`."""
    outputs = model(**{k: v for k, v in inputs.items() if k not in _LABEL_KEYS}, use_cache=False)
    logits = outputs.logits.float()
    if "shift_labels" in inputs:  # already aligned with the logits
        targets = inputs["shift_labels"]
    else:
        targets = F.pad(inputs["labels"], (0, 1), value=IGNORE_INDEX)[..., 1:]
    targets = targets.to(logits.device)
    nll = F.cross_entropy(logits.flatten(0, -2), targets.flatten(), ignore_index=IGNORE_INDEX, reduction="sum")
    return nll, (targets != IGNORE_INDEX).sum()


class CleanLossMeter:
    """Measures the clean loss every `every` optimizer steps and turns what it measured into log entries."""

    def __init__(self, every: int):
        self.every = every
        self._reset()

    def _reset(self):
        self.nll, self.tokens, self.training_loss, self.steps = 0.0, 0, 0.0, set()

    def due(self, global_step: int) -> bool:
        return global_step % self.every == 0

    @torch.no_grad()
    def measure(self, model, inputs: dict, global_step: int) -> None:
        """The clean loss of one micro-batch of step `global_step`, kept on the device (nothing is read back)."""
        device = next(model.parameters()).device
        devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):  # dropout draws leave the training's random state as it was
            nll, tokens = _clean_nll(model, inputs)
        self.nll, self.tokens = self.nll + nll, self.tokens + tokens
        self.steps.add(global_step)

    def add_training_loss(self, loss: torch.Tensor) -> None:
        """The loss `training_step` returned for a measured micro-batch, as Trainer adds it to the logged loss."""
        self.training_loss = self.training_loss + loss.detach()

    def logs(self, accelerator) -> dict[str, float]:
        """`clean_loss` and `clean_loss_gap` of the steps measured since the last call (empty if none), gathered over
        the ranks: every rank must call it at the same logging steps, as Trainer's `log` does."""
        if not self.steps:
            return {}
        device = accelerator.device
        totals = torch.stack([torch.as_tensor(v, dtype=torch.float64, device=device).reshape(())
                              for v in (self.nll, self.tokens, self.training_loss)])  # fmt: skip
        nll, tokens, training_loss = accelerator.gather(totals[None]).reshape(-1, 3).double().unbind(-1)
        clean = (nll.sum() / tokens.sum().clamp(min=1)).item()
        noisy = (training_loss.mean() / len(self.steps)).item()  # Trainer's logged loss: the ranks' mean, per step
        self._reset()
        return {"clean_loss": clean, "clean_loss_gap": noisy - clean}
