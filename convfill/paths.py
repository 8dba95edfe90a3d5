"""Where ConvFill keeps user data: `CONVFILL_HOME` or `~/.convfill` (database, converted models, exports)."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    p = Path(os.environ.get("CONVFILL_HOME") or Path.home() / ".convfill")
    p.mkdir(parents=True, exist_ok=True)
    return p


def db_path() -> Path:
    """The SQLite store shared by the chat and labeling tabs (`CONVFILL_DB` overrides)."""
    return Path(os.environ.get("CONVFILL_DB") or home() / "convfill.db")
