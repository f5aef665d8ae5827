"""Keep the hub offline unless the user said otherwise (before ``datasets`` is imported).

::

    ensure_offline_env()        # HF_HUB_OFFLINE=1 and HF_DATASETS_OFFLINE=1 unless set
"""

from __future__ import annotations

import os


def ensure_offline_env() -> None:
    """Default HF_HUB_OFFLINE / HF_DATASETS_OFFLINE to 1; a value the user set wins."""
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        os.environ.setdefault(name, "1")
