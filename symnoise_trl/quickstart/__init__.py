"""Quickstart: the offline tiny Llama built in code (`tiny_model`) and checkable instruction tasks (`tasks`).

Built on the public API only; `symnoise-sft` uses both when it is given no model or data set.
"""
