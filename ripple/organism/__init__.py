"""The model organism: a small GPT-2 trained on the synthetic world, shipped in ``data/``."""
