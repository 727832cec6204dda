"""The research harness: the paper's response metrics and evaluation (`evaluate`), its noise ablation (`ablate`),
and the tables and plots they report (`report`, shared with the benchmarks).

Built on the public API and the command line; nothing in the core imports it.
"""
