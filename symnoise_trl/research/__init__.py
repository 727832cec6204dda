"""Research: the paper's response metrics and evaluation (`evaluate`), its noise ablation (`ablate`), and real
pretrained models for machines without hub access (`offline_models`).

Built on the public API and the command line; no layer below imports it.
"""
