"""SIR (selective impact revision) against the plain edit, RECT and AlphaEdit."""
