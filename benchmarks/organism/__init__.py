"""The model organism: recall and causal traces."""
