"""The Talker registry: runtime name -> class, imported on first use (torch loads only for `transformers`),
and `get_talker`, which falls back to transformers on the same weights when llama.cpp cannot run here."""

from __future__ import annotations

import importlib
import logging

from ..errors import UnknownTalkerError
from .base import Talker
from .probe import RuntimeUnavailable

log = logging.getLogger(__name__)

TALKERS: dict[str, str] = {
    "llamacpp": "convfill.talkers.llamacpp:LlamaCppTalker",
    "transformers": "convfill.talkers.transformers:TransformersTalker",
    "remote": "convfill.talkers.remote:RemoteTalker",  # an OpenAI-compatible completions server
}
# llama.cpp-only options the fallback drops (the transformers runtime has no equivalent).
_LLAMACPP_ONLY = ("n_threads", "n_ctx", "fast", "merge")


def _runtime_class(runtime: str) -> type[Talker]:
    try:
        module, cls = TALKERS[runtime].split(":")
    except KeyError:
        raise UnknownTalkerError(runtime, list(TALKERS)) from None
    return getattr(importlib.import_module(module), cls)


def get_talker(runtime: str = "llamacpp", model: str | None = None, *, fallback: bool = True,
               **options) -> Talker:
    """Build a Talker. `model`: GGUF path (llamacpp) or hub id / local dir / GGUF (transformers).

    Options that are None are left to the runtime's defaults. `fallback=False` raises `RuntimeUnavailable`
    instead of switching runtimes.
    """
    cls = _runtime_class(runtime)
    options = {k: v for k, v in options.items() if v is not None}
    try:
        return cls(model, **options)
    except RuntimeUnavailable as e:
        if runtime != "llamacpp" or not fallback:
            raise
        return _transformers_fallback(model, options, str(e))


def _transformers_fallback(model: str | None, options: dict, reason: str) -> Talker:
    from .llamacpp import resolve_adapter

    log.warning("%s", reason)
    options = {k: v for k, v in options.items() if k not in _LLAMACPP_ONLY}
    adapter = resolve_adapter(options.pop("lora_path", "auto"), model)
    if options.get("style") is None:  # the llama.cpp rule: prompted only for the bare shipped base
        options["style"] = "prompted" if model is None and adapter is None else "convfill"
    return _runtime_class("transformers")(model, lora_path=adapter, fallback=reason, **options)
