"""Trainers: the clean loss, the loss of a training batch without noise, measured every N steps beside the noisy loss.

The logged `loss` of a SymNoise run is the loss of the noisy copies, which a plain run's loss cannot be compared
with. With `symnoise_clean_loss_steps=N` the trainer also runs each micro-batch of every N-th optimizer step (the
first one included) through the model without noise - no gradient, one extra forward of B rows - and logs at the
next logging step:
  clean_loss       the token-mean loss of those batches without noise (the models' causal LM loss: next-token
                   cross entropy over the labels that are not -100), over all ranks
  clean_loss_gap   the logged training loss of the same steps minus clean_loss: what the noise adds
It changes no gradient, no noise and no random state (the forward runs under a forked RNG): a run with it trains
bit-identically to one without it. The gap also holds whatever the trainer's loss adds to the token NLL (a
mixture-of-experts router loss, label smoothing, TRL's "dft" loss). The clean forward builds the model's logits, as a
plain Trainer's forward does; the loss is computed from them in chunks of CHUNK_TOKENS tokens.
"""

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100
CHUNK_TOKENS = 4096
_LABEL_KEYS = ("labels", "shift_labels")


def _clean_nll(model, inputs: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of the next-token negative log-likelihood over the labelled tokens, their count) of `inputs`."""
    outputs = model(**{k: v for k, v in inputs.items() if k not in _LABEL_KEYS}, use_cache=False)
    logits = outputs.logits if hasattr(outputs, "logits") else outputs[0]  # return_dict=False gives a tuple
    if "shift_labels" in inputs:  # already aligned with the logits
        targets = inputs["shift_labels"]
    else:
        targets = F.pad(inputs["labels"], (0, 1), value=IGNORE_INDEX)[..., 1:]
    logits, targets = logits.flatten(0, -2), targets.to(logits.device).flatten()
    # NOTE: in chunks of tokens, so the fp32 copy of the logits is a chunk's (B * T * vocab in full).
    nll = sum(F.cross_entropy(logits[i : i + CHUNK_TOKENS].float(), targets[i : i + CHUNK_TOKENS],
                              ignore_index=IGNORE_INDEX, reduction="sum")
              for i in range(0, targets.numel(), CHUNK_TOKENS))  # fmt: skip
    return nll, (targets != IGNORE_INDEX).sum()


def _random_devices(model) -> tuple[str, list[int]]:
    """The accelerator type and indices whose random state a forward of `model` may draw from (dropout)."""
    devices = {p.device for p in model.parameters() if p.device.type not in ("cpu", "meta")}
    device_type = next(iter(devices)).type if devices else "cuda"
    return device_type, sorted(d.index or 0 for d in devices if d.type == device_type)


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
        device_type, devices = _random_devices(model)
        # dropout draws leave the training's random state as it was, on the CPU and every device of the model
        with torch.random.fork_rng(devices=devices, device_type=device_type):
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
