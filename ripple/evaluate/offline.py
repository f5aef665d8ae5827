"""Keep the hub offline unless the user said otherwise (before ``datasets`` is imported).

>>> ensure_offline_env()  # doctest: +SKIP
"""

from __future__ import annotations

import os


def ensure_offline_env() -> None:
    """Default HF_HUB_OFFLINE / HF_DATASETS_OFFLINE to 1; a value the user set wins."""
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        os.environ.setdefault(name, "1")
