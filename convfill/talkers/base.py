"""The Talker interface: stream one phrase's tokens for a `PhraseContext`, stop at the end marker.

Runtimes implement the blocking `generate(prompt, max_tokens, stop)`; this base class builds the prompt
(`convfill.prompt`, byte-exact) and bridges generation to asyncio on a worker thread, so cancelling the
async stream stops the model within one token.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator

from ..aio import FIRST, KNOWLEDGE, LATER, SPECULATIVE, ModelThread, iterate_in_steps
from ..errors import ConfigError
from ..prompt import STYLES, TEMPLATES, PhraseContext, Template, build_prompt
from .slots import VISITOR, Choose, Slots, first_free


def phrase_priority(ctx: PhraseContext) -> int:
    """First words first: a turn's opening phrase and a phrase from a waiting chunk go before anything else;
    a later filler starts when no phrase streams, or once it has waited `aio.AGE_S` (so answers are not slowed
    by other visitors' fillers, and no filler starves)."""
    return FIRST if not ctx.earlier else KNOWLEDGE if ctx.knowledge is not None else LATER


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
        # Each phrase holds one of the model's caches from its first token to its last (llama.cpp and torch
        # caches are not thread-safe, and sessions of the app share one Talker). Runtimes with one cache
        # run phrases one after another; `LlamaCppTalker` keeps one per visitor (`slots`).
        self._slots = Slots(1)
        self._wanted = threading.Event()  # set while any generation waits for the model (warm-ups yield to it)
        self._waiting = 0
        self._waiting_lock = threading.Lock()
        # Every call into the model runs on this one long-lived thread. llama.cpp's OpenMP keeps a thread
        # team per calling thread that spins for a while after each call: work from a second thread
        # (a prefill, then a phrase) made two teams fight over the cores, and a new thread per phrase
        # paid for a new team (measured: a phrase after a prefill decoded at half speed). It takes waiting
        # work by priority, one token at a time: a turn's first words before other sessions' phrases
        # (`convfill.aio`).
        self._model_thread = ModelThread()

    def reserve(self, visitors: int | None = None):
        """Make caches for this many visitors phrasing at once (None: as many as the runtime may keep) ahead
        of need, on the model thread when nothing waits, so no visitor's first words pay for one; a future
        that is done when they are made, or None (runtimes with several caches override)."""
        return None

    def choose_slot(self, prompt: str, visitor: object | None = None) -> Choose:
        """How to pick a cache for `visitor`'s `prompt` among the free ones (runtimes that cache prefixes
        match them)."""
        return first_free

    def prompt(self, ctx: PhraseContext) -> str:
        return build_prompt(ctx, self.template, self.system, self.style)

    def count_tokens(self, text: str) -> int:
        """How many tokens `text` is for this model (runtimes with a tokenizer count exactly; this is the
        usual ~4 characters per token of English, for scripted Talkers)."""
        tokenize = getattr(self, "tokenize", None)
        return len(tokenize(text)) if tokenize else max(1, len(text) // 4)

    def generate(self, prompt: str, max_tokens: int, stop: threading.Event) -> Iterator[str]:
        """Blocking: yield text pieces of the completion; return at the end marker or when `stop` is set."""
        raise NotImplementedError

    def _wait_for_model(self):
        """Count one generation as waiting for the model; returns its `release()` (idempotent). `_wanted` is
        set while any waits: with two phrases queued, the first to start must not let a warm-up slip in
        ahead of the second."""
        released = [False]

        def update() -> None:
            if self._waiting > 0:
                self._wanted.set()
            else:
                self._wanted.clear()

        def release() -> None:
            with self._waiting_lock:
                if not released[0]:
                    released[0] = True
                    self._waiting -= 1
                    update()

        with self._waiting_lock:
            self._waiting += 1
            update()
        return release

    def phrase_options(self, ctx: PhraseContext, prompt: str) -> dict:
        """Extra keyword arguments for `generate` for this phrase (none by default). Runtimes that decode
        fillers differently from knowledge phrases (`convfill.talkers.fillers`) return them here: `stream`
        knows the `PhraseContext`, `generate` only the prompt."""
        return {}

    def generate_in(self, slot: int, prompt: str, max_tokens: int, stop: threading.Event,
                    options: dict | None = None) -> Iterator[str]:
        """`generate` in cache `slot` (runtimes with several caches override)."""
        return self.generate(prompt, max_tokens, stop, **(options or {}))

    def warm_prefix(self, prefix: str, visitor: object | None = None) -> None:
        """Blocking: pre-compute the KV cache for `visitor`'s `prefix` (runtimes that cache prefixes override)."""

    async def warm(self, ctx: PhraseContext) -> None:
        """Pre-fill the cache with the part of the next turn's prompt that is already known.

        Called by the engine when a turn ends: the next prompt starts with the previous turn (user + reply),
        which would otherwise be evaluated while the user waits for the first token. A generation request
        that arrives meanwhile pre-empts the warm-up (see `_wanted`).
        """
        marker = "\u2063warm\u2063"  # a sentinel user text that survives `sanitize`
        prompt = build_prompt(ctx.__class__(user=marker, prev_user=ctx.prev_user, prev_reply=ctx.prev_reply),
                              self.template, self.system, self.style)
        prefix = prompt[: prompt.index(marker)]
        await self._on_model_thread(self.warm_prefix, prefix, VISITOR.get())

    async def _on_model_thread(self, fn, *args, priority: int = SPECULATIVE):
        """`fn(*args)` on the model thread (by default after every phrase that waits: warm-ups, prefills)."""
        return await asyncio.wrap_future(self._model_thread.submit_at(priority, fn, *args))

    async def prefill(self, ctx: PhraseContext) -> None:
        """Speculatively evaluate the whole prompt of `ctx` into the cache (the message being typed).

        A turn's first phrase is a `<sil>` filler whose prompt depends only on the user text and the
        previous turn, so it is fully known before Send: evaluated while the user types, Send leaves only
        sampling (llama.cpp samples an exactly cached prompt without a decode step). Edits reuse the
        longest common prefix; a generation request pre-empts it within one small batch (`_wanted`).
        """
        await self._on_model_thread(self.warm_prefix, self.prompt(ctx), VISITOR.get())

    async def stream(self, ctx: PhraseContext, max_tokens: int = 48) -> AsyncIterator[str]:
        """Async text pieces of one phrase for `ctx`."""
        prompt = self.prompt(ctx)
        options = self.phrase_options(ctx, prompt)
        release = self._wait_for_model()  # before queueing: a warm-up on the model thread yields to it
        priority, visitor = phrase_priority(ctx), VISITOR.get()

        def start(stop: threading.Event, resume):
            slot = self._slots.take(self.choose_slot(prompt, visitor), resume)
            if slot is None:
                return None  # every cache holds a phrase: wait, in line, for one to end
            release()
            try:
                pieces = self.generate_in(slot, prompt, max_tokens, stop, options)
            except BaseException:  # a runtime that fails before its first piece still frees the cache
                self._slots.give(slot)
                raise
            return self._slots.holding(slot, pieces)

        try:
            async for piece in iterate_in_steps(start, self._model_thread, priority):
                yield piece
        finally:
            release()  # cancelled before the model thread reached it: no longer waiting

    def describe(self) -> dict:
        """What gets logged about this Talker (never secrets)."""
        return {"runtime": self.runtime, "model": self.name, "template": self.template.name,
                "style": self.style}

    def close(self) -> None:
        """Release model memory (optional)."""
