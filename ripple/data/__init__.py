"""Data files that ship with ripple (read with importlib.resources)."""
