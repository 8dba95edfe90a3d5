"""Honest fakes for tests and demos: scripted Talker and Reasoner that run on the injected clock.

They implement the real interfaces (no patched internals), so a test drives the real engine and asserts
on the event sequence it emits:

    clock = FakeClock()
    engine = Engine(ScriptedTalker(clock=clock), ScriptedReasoner(["A fact."], delays=[2.5], clock=clock),
                    clock=clock)
    events = await run_turn(engine, "hello")
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence

from .clock import Clock, MonotonicClock
from .errors import ReasonerError
from .events import Event
from .prompt import PhraseContext
from .reasoners.base import Reasoner, ReasonerRequest
from .talkers.base import Talker

FILLERS = ("Let me check that for you.", "Still looking into it.", "Bear with me a moment.",
           "Almost there.", "One more second.")


def default_script(ctx: PhraseContext) -> str:
    """Say the knowledge back, or a filler chosen by how many phrases came before."""
    if ctx.knowledge:
        return f"So, {ctx.knowledge}"
    return FILLERS[len(ctx.earlier) % len(FILLERS)]


class ScriptedTalker(Talker):
    """Speaks `script(ctx)` word by word.

    Args:
        script: maps a phrase context to the phrase.
        first_token_s: delay before the first word (the Talker's TTFT).
        per_token_s: delay between words.
        clock: time source.
    """

    runtime = "scripted"

    def __init__(self, script: Callable[[PhraseContext], str] = default_script, first_token_s: float = 0.05,
                 per_token_s: float = 0.02, clock: Clock | None = None, style: str = "convfill"):
        super().__init__("scripted", style=style)
        self.script, self.first_token_s, self.per_token_s = script, first_token_s, per_token_s
        self.clock = clock or MonotonicClock()
        self.contexts: list[PhraseContext] = []  # every context it was asked to speak, for assertions
        self.prefilled: list[PhraseContext] = []  # every context it was asked to prefill (typed ahead)

    async def prefill(self, ctx: PhraseContext) -> None:
        self.prefilled.append(ctx)

    async def stream(self, ctx: PhraseContext, max_tokens: int = 48) -> AsyncIterator[str]:
        self.contexts.append(ctx)
        words = self.script(ctx).split(" ")[:max_tokens]
        for i, w in enumerate(words):
            await self.clock.sleep(self.first_token_s if i == 0 else self.per_token_s)
            yield w if i == 0 else " " + w

    def generate(self, prompt: str, max_tokens: int, stop: threading.Event) -> Iterator[str]:
        yield from ()  # never used: `stream` is overridden


class ScriptedReasoner(Reasoner):
    """Streams `chunks`, waiting `delays[i]` before chunk i; optionally fails or hangs afterwards.

    Args:
        chunks: knowledge sentences to send.
        delays: seconds before each chunk (a single float applies to all).
        error: raised after the chunks (e.g. ReasonerError("429", "rate_limit")).
        hang: after the chunks, wait forever (a dead Reasoner).
        clock: time source.
    """

    name = "scripted"
    model = "scripted"

    def __init__(self, chunks: Sequence[str], delays: Sequence[float] | float = 0.5,
                 error: ReasonerError | Exception | None = None, hang: bool = False, clock: Clock | None = None):
        self.chunks = list(chunks)
        self.delays = [delays] * len(self.chunks) if isinstance(delays, (int, float)) else list(delays)
        self.error, self.hang = error, hang
        self.clock = clock or MonotonicClock()
        self.requests: list[ReasonerRequest] = []
        self.closed = 0  # how many streams were closed (normally or by cancellation)

    async def stream(self, request: ReasonerRequest) -> AsyncIterator[str]:
        self.requests.append(request)
        try:
            for chunk, delay in zip(self.chunks, self.delays):
                await self.clock.sleep(delay)
                yield chunk + " "
            if self.error is not None:
                raise self.error
            if self.hang:
                await self.clock.sleep(10**9)
        finally:
            self.closed += 1


async def run_turn(engine, text: str) -> list[Event]:
    """Run one turn to completion and return all its events."""
    return [ev async for ev in engine.turn(text)]


def turn_in_background(engine, text: str) -> tuple[asyncio.Task, list[Event]]:
    """Start one turn as a task; its events fill the returned list as they are emitted (for barge-in tests)."""
    events: list[Event] = []

    async def consume() -> None:
        async for ev in engine.turn(text):
            events.append(ev)

    return asyncio.create_task(consume()), events


def in_threads(worker: Callable[[int], None], n: int) -> list[Exception]:
    """Run `worker(i)` on `n` threads at once and return what they raised (concurrency tests assert it is [])."""
    errors: list[Exception] = []

    def run(i: int) -> None:
        try:
            worker(i)
        except Exception as e:  # reported to the caller
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def of_type(events: Sequence[Event], cls: type) -> list:
    """The events of one class, in order."""
    return [e for e in events if isinstance(e, cls)]
