"""Noise: SymNoise's noise on a batch, with torch and the kernels only (no transformers): the run's settings, the
batch's layout and lengths, the noise plan, the seeds, the one-sided ablation noises and the embedding hook."""
