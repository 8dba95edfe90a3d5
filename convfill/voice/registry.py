"""How a one-line speech-model setting becomes a model, for `asr` and `tts` alike: the same spelling of
"the OpenAI API" and the same once-per-process, thread-safe loading."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import TypeVar

M = TypeVar("M")


def openai_model(spec: str, default: str) -> str | None:
    """The OpenAI model `spec` names ("openai" = `default`, "openai:<model>"), or None for a local model."""
    if spec == "openai" or spec.startswith("openai:"):
        return spec.partition(":")[2].strip() or default
    return None


def loaded_once(build: Callable[[str], M]) -> Callable[[str | None], M]:
    """`build(spec)`, loaded once per process per spec and shared: thread-safe, so a second caller waits for
    the first load instead of loading the model twice (the four most recent specs are kept)."""
    lock = threading.Lock()
    cached = functools.lru_cache(maxsize=4)(build)

    def load(spec: str | None = None) -> M:
        with lock:
            return cached((spec or "").strip())

    return load
