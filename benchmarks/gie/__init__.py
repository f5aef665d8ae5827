"""GIE (the ripple graph's damage rankers): recall against cost."""
