"""Many sequential edits: capability curves on the organism and on real models."""
