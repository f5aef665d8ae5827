"""The editors: quality and speed on the organism, hyperparameter sweeps, ripple effects, RLEdit."""
