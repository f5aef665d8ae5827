"""Capability over many sequential edits (ripple stress)."""
