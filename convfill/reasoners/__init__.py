"""Reasoner registry: a name -> class lookup, importing each provider module only when it is used.

Adding a Reasoner is one module with a `Reasoner` subclass (with its `from_spec`) plus one line in
`REASONERS`. `build_reasoner(spec)` is the one place a `ReasonerSpec` (CLI flags, app controls, eval
options) becomes a Reasoner.
"""

from __future__ import annotations

import importlib

from ..errors import UnknownReasonerError
from .base import DIRECT_SYSTEM_PROMPT, KNOWLEDGE_SYSTEM_PROMPT, Message, Reasoner, ReasonerRequest, ReasonerSpec

# name -> "module:Class"; optional SDKs are imported only when their Reasoner is built.
REASONERS: dict[str, str] = {
    "local": "convfill.reasoners.local:LocalReasoner",
    "oracle": "convfill.reasoners.oracle:OracleReasoner",
    "openai": "convfill.reasoners.openai:OpenAIReasoner",
    "anthropic": "convfill.reasoners.anthropic:AnthropicReasoner",
    "gemini": "convfill.reasoners.gemini:GeminiReasoner",
    "replay": "convfill.reasoners.replay:ReplayReasoner",  # recorded chunks at their recorded times
}


def reasoner_class(name: str) -> type[Reasoner]:
    try:
        target = REASONERS[name]
    except KeyError:
        raise UnknownReasonerError(name, list(REASONERS)) from None
    module, cls = target.split(":")
    return getattr(importlib.import_module(module), cls)


def reasoner_status(name: str, **options) -> dict:
    """Whether Reasoner `name` can be used here, for the UI and `python -m convfill reasoners`.

    A class may define `available(**options) -> (bool, detail)` (e.g. "key present"; `openai` takes
    `base_url=` to probe a server); otherwise it is usable when its module imports.
    """
    try:
        cls = reasoner_class(name)
    except ImportError as e:
        return {"name": name, "usable": False, "detail": f"missing package: {e.name}"}
    check = getattr(cls, "available", None)
    usable, detail = check(**options) if check else (True, "offline")
    return {"name": name, "usable": usable, "detail": detail}


def get_reasoner(name: str, **options) -> Reasoner:
    """Build the Reasoner registered as `name` with its keyword options (library use and tests)."""
    return reasoner_class(name)(**options)


def build_reasoner(spec: ReasonerSpec) -> Reasoner:
    """The Reasoner for `spec`, from the options its class declares (`from_spec`)."""
    return reasoner_class(spec.name).from_spec(spec)


__all__ = ["DIRECT_SYSTEM_PROMPT", "KNOWLEDGE_SYSTEM_PROMPT", "Message", "REASONERS", "Reasoner", "ReasonerRequest",
           "ReasonerSpec", "build_reasoner", "get_reasoner", "reasoner_status", "reasoner_class"]
