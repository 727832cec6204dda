"""Trainers: SymNoise in transformers' and TRL's trainers: the arguments, the mixin, `SymNoiseTrainer` and
`SymNoiseSFTTrainer`, the two-pass mode, the clean loss and the model card."""
