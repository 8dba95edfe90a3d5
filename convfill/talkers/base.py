"""The Talker interface: stream one phrase's tokens for a `PhraseContext`, stop at the end marker.

Runtimes implement the blocking `generate(prompt, max_tokens, stop)`; this base class builds the prompt
(`convfill.prompt`, byte-exact) and bridges generation to asyncio on a worker thread, so cancelling the
async stream stops the model within one token.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator

from ..aio import iterate_in_thread
from ..errors import ConfigError
from ..prompt import STYLES, TEMPLATES, PhraseContext, Template, build_prompt


class Talker:
    """A small local LM that speaks phrases. Subclasses implement `generate`.

    Args:
        name: model identifier recorded with every turn.
        template: prompt family ("chatml", "gemma", "llama3").
        system: optional system block.
        style: "convfill" (byte-exact, for trained Talkers) or "prompted" (instructions, for base models).
    """

    runtime = "base"

    def __init__(self, name: str, template: str | Template = "chatml", system: str | None = None,
                 style: str = "convfill"):
        if style not in STYLES:
            raise ConfigError(f"Unknown prompt style {style!r}; use one of {', '.join(STYLES)}")
        self.name, self.style = name, style
        self.template = TEMPLATES[template] if isinstance(template, str) else template
        self.system = system
        # One generation at a time per loaded model: llama.cpp and torch KV caches are not thread-safe,
        # and two sessions of the app can share one Talker.
        self._lock = threading.Lock()

    def prompt(self, ctx: PhraseContext) -> str:
        return build_prompt(ctx, self.template, self.system, self.style)

    def generate(self, prompt: str, max_tokens: int, stop: threading.Event) -> Iterator[str]:
        """Blocking: yield text pieces of the completion; return at the end marker or when `stop` is set."""
        raise NotImplementedError

    def _locked_generate(self, prompt: str, max_tokens: int, stop: threading.Event) -> Iterator[str]:
        with self._lock:
            yield from self.generate(prompt, max_tokens, stop)

    async def stream(self, ctx: PhraseContext, max_tokens: int = 48) -> AsyncIterator[str]:
        """Async text pieces of one phrase for `ctx`."""
        prompt = self.prompt(ctx)
        async for piece in iterate_in_thread(lambda stop: self._locked_generate(prompt, max_tokens, stop)):
            yield piece

    def describe(self) -> dict:
        """What gets logged about this Talker (never secrets)."""
        return {"runtime": self.runtime, "model": self.name, "template": self.template.name,
                "style": self.style}

    def close(self) -> None:
        """Release model memory (optional)."""
