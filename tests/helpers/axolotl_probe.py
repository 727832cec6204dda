"""A test-only Axolotl plugin that records a run for tests/integrations/test_axolotl.py (after SymNoisePlugin).

It writes `probe.pt` to the run's output folder with:
- `batches`: every training micro-batch as the trainer received it (before SymNoise doubles it);
- `seeds`: (global step, seed) of every SymNoise micro-batch, from the trainer's public `symnoise_seeds`;
- `forwards`: for every forward of the model, whether it trained, the raw token-embedding output and what the first
  decoder layer received (the first training forward and every evaluation forward);
- `by_hand`: the loss of the first micro-batch's two halves, computed before its training step by the model itself on
  the original batch, with a noise hook of the test's own (the reference's signs, L counted here);
- `logs`: the trainer's log history;
- `module_types`: the class names of the model's modules (LoRA layers, 4-bit linears);
- `trainer_class`: the class name of the trainer that trained.
"""

import torch
from axolotl.integrations.base import BasePlugin
from transformers import TrainerCallback

from symnoise_trl import active_symnoise_hook
from symnoise_trl.kernels import rademacher

from .tiny import first_decoder_layer


def noise_by_hand(batch: dict, alpha: float, dim: int, seed: int) -> torch.Tensor:
    """s * eps for the first copy: L is the number of real tokens of each sequence, found token by token (a row of
    Axolotl's multipack holds sequences numbered 1, 2, ... in its attention mask; 0 is padding)."""
    ids, mask = batch["input_ids"], batch["attention_mask"]
    scale = torch.zeros(ids.shape, dtype=torch.float64)
    for row in range(ids.shape[0]):
        for value in set(mask[row].tolist()) - {0}:
            members = mask[row] == value
            scale[row, members] = alpha / (3 * int(members.sum()) * dim) ** 0.5
    eps = rademacher(ids.numel(), dim, seed).reshape(*ids.shape, dim).float()
    return scale.float()[..., None] * eps


class ProbePlugin(BasePlugin):
    def post_trainer_create(self, cfg, trainer):
        record = {"batches": [], "seeds": [], "forwards": [], "by_hand": None, "logs": None,
                  "module_types": sorted({type(m).__name__ for m in trainer.model.modules()})}  # fmt: skip
        computing = []  # non-empty while the probe's own forwards run: they are not recorded
        embeddings = trainer.model.get_input_embeddings()
        alpha = cfg.symnoise_alpha

        def on_embedding(module, args, output):
            if computing:
                return
            record["forwards"].append({"training": module.training, "raw": output.detach().clone()})

        def on_decoder(module, args, kwargs):
            if computing:
                return
            hidden = args[0] if args else kwargs["hidden_states"]
            record["forwards"][-1].setdefault("received", hidden.detach().clone())

        embeddings.register_forward_hook(on_embedding)  # before SymNoise's (attached in train()): the plain output
        first_decoder_layer(trainer.model).register_forward_pre_hook(on_decoder, with_kwargs=True)
        original_step = trainer.training_step

        def training_step(model, inputs, num_items_in_batch=None):
            record.setdefault("trainer_class", type(trainer).__name__)
            batch = {k: v.detach().clone() for k, v in inputs.items() if isinstance(v, torch.Tensor)}
            record["batches"].append(batch)
            if record["by_hand"] is None and alpha:
                computing.append(True)
                record["by_hand"] = self.halves_by_hand(trainer, batch, alpha)
                computing.clear()
            loss = original_step(model, inputs, num_items_in_batch)
            if getattr(trainer, "symnoise_seeds", None) is not None:
                last = trainer.symnoise_seeds.last
                record["seeds"].append((last.global_step, last.seed))
            return loss

        trainer.training_step = training_step
        output = f"{cfg.output_dir}/probe.pt"

        class Save(TrainerCallback):
            def on_train_end(self, args, state, control, **kwargs):
                record["logs"] = state.log_history
                torch.save(record, output)

        trainer.add_callback(Save())

    @staticmethod
    def halves_by_hand(trainer, batch, alpha):
        """Both halves' losses, by the model on the original batch with +-s*eps added by a hook of this probe. The
        next seed is the one the trainer will draw (a pure function of the base seed, the step and the rank)."""
        from symnoise_trl.noise.seeds import micro_batch_seed

        seed = micro_batch_seed(trainer.symnoise_seeds.base_seed, trainer.state.global_step, 0, 0)
        model = trainer.model
        embeddings = model.get_input_embeddings()
        assert active_symnoise_hook(model).plan is None  # SymNoise's hook is attached and inert outside its step
        noise = noise_by_hand(batch, alpha, embeddings.weight.shape[1], seed)
        losses = []
        for sign in (1.0, -1.0):
            handle = embeddings.register_forward_hook(lambda m, a, out, s=sign: out + s * noise.to(out.dtype))
            with torch.no_grad():
                losses.append(model(**batch).loss.item())
            handle.remove()
        return {"seed": seed, "losses": losses, "noise": noise}
