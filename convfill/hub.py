"""Is the Hugging Face Hub usable right now? Decided once per process, quickly.

Without this, an offline machine that did not set `HF_HUB_OFFLINE=1` waits through the hub client's
retries (about 45 s per model) before any offline fallback runs. We treat the hub as offline when the
variable says so or when huggingface.co cannot be reached within two seconds.
"""

from __future__ import annotations

import functools
import os
import socket

HUB_HOST = "huggingface.co"


@functools.lru_cache(maxsize=1)
def _reachable(host: str = HUB_HOST, timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:  # DNS failure, refused, unreachable or timed out
        return False


def hub_offline() -> bool:
    """True when hub ids must be resolved from the local cache only."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return True
    return not _reachable()
