"""Talker registry: runtime name -> class, imported lazily (torch is only loaded for `transformers`)."""

from __future__ import annotations

import importlib

from ..errors import UnknownTalkerError
from .base import Talker

TALKERS: dict[str, str] = {
    "llamacpp": "convfill.talkers.llamacpp:LlamaCppTalker",
    "transformers": "convfill.talkers.transformers:TransformersTalker",
}


def get_talker(runtime: str = "llamacpp", model: str | None = None, **options) -> Talker:
    """Build a Talker. `model`: GGUF path (llamacpp) or hub id / local dir / GGUF (transformers).

    Options that are None are left to the runtime's defaults.
    """
    try:
        module, cls = TALKERS[runtime].split(":")
    except KeyError:
        raise UnknownTalkerError(runtime, list(TALKERS)) from None
    options = {k: v for k, v in options.items() if v is not None}
    return getattr(importlib.import_module(module), cls)(model, **options)


__all__ = ["TALKERS", "Talker", "get_talker"]
