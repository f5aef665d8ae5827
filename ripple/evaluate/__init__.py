"""Ripple-effect evaluation: RippleEdits categories and MQuAKE-style multi-hop accuracy on the
organism (:mod:`ripple.evaluate.ripple_scores`), and loaders for the public benchmark formats
(:mod:`ripple.evaluate.datasets`)."""
