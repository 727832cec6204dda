"""Trainers: the weighting of the two-pass mode: each pass of one micro-batch counts 1/2, router loss included.

The two-pass mode trains X + s*eps, then X - s*eps, as two `training_step` calls on the original batch; their
gradients must add up to those of the one doubled pass, whose loss is normalised by twice the label tokens.
"""

import contextlib

from ..hf.internals import accumulation_steps_doubled, loss_is_normalised_by_count, router_loss_halved
from ..hf.model import transformers_model


@contextlib.contextmanager
def weighted_half(trainer, num_items_in_batch):
    """Weight one pass of the two-pass mode by 1/2.

    A loss normalised by the token count is halved by the doubled count the caller passes; a mixture-of-experts
    router loss, added per micro-batch with its coefficient, is halved through that coefficient. A loss that Trainer
    divides by the accumulation steps is halved by doubling them for the pass."""
    if not loss_is_normalised_by_count(trainer, num_items_in_batch):
        with accumulation_steps_doubled(trainer):
            yield
        return
    if num_items_in_batch is None:
        raise RuntimeError(
            "`symnoise_two_pass=True` cannot weight its two passes here: Trainer gave no `num_items_in_batch` "
            "and does not divide this trainer's loss by the accumulation steps. Use the one-pass mode."
        )
    with router_loss_halved(trainer, transformers_model(trainer.model, trainer.accelerator)):
        yield
