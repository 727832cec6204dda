"""Integrations: SymNoise for frameworks that build their own trainer from a config file (Axolotl).

Each module here imports its framework; no other layer imports them.
"""
