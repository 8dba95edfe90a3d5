"""A "Reasoner alone" turn: the Reasoner's streamed answer is what the user hears, as timeline events.

This is the baseline ConvFill hides latency against. Rather than invent a second latency formula, the
run is written as the same events an engine turn emits - one phrase (source "chunk") whose tokens are the
Reasoner's deltas, plus a `ChunkArrived` per completed sentence - so `convfill.metrics.turn_metrics`
reads it like any other turn: `talker_ttft_ms` (= first spoken token) and `first_knowledge_phrase_ms` are
the Reasoner's first token, `reasoner_first_chunk_ms` its first complete sentence.

Any `Reasoner` works through its public `stream()`; with the offline `local` Reasoner this is the small
local model answering on its own, with `oracle` it is the oracle's latency profile.
"""

from __future__ import annotations

import asyncio
import time
import uuid

from ..chunker import SentenceChunker
from ..clock import Clock, MonotonicClock
from ..errors import ReasonerError
from ..events import (ChunkArrived, ErrorEvent, Event, FirstToken, PhraseDelta, PhraseEnded, PhraseStarted,
                      ReasonerEnded, TurnEnded, TurnStarted)
from ..prompt import sanitize
from ..reasoners.base import Reasoner, ReasonerRequest


async def reasoner_turn(reasoner: Reasoner, text: str, clock: Clock | None = None,
                        timeout_s: float = 60.0) -> list[Event]:
    """Stream `reasoner`'s answer to `text` and return the turn's events (always ending with TurnEnded).

    A `ReasonerError` (or any exception from the stream) becomes an `ErrorEvent` and reason "error";
    running past `timeout_s` of wall time ends the turn with reason "timeout".
    """
    clock = clock or MonotonicClock()
    t0 = clock.now_ms()
    events: list[Event] = []

    def ts() -> float:
        return round(clock.now_ms() - t0, 3)

    events.append(TurnStarted(0.0, uuid.uuid4().hex, sanitize(text), time.time()))
    events.append(PhraseStarted(0.0, 0, "chunk", None))
    chunker, pieces, chunks = SentenceChunker(), [], []
    reason, status = "done", "done"

    def add_chunks(done: list[str]) -> None:
        for c in done:
            chunks.append(c)
            events.append(ChunkArrived(ts(), len(chunks) - 1, c))

    async def consume() -> None:
        stream = reasoner.stream(ReasonerRequest(sanitize(text)))
        try:
            async for delta in stream:
                if not delta:
                    continue
                if not pieces:
                    events.append(FirstToken(ts(), 0))
                pieces.append(delta)
                events.append(PhraseDelta(ts(), 0, delta))
                add_chunks(chunker.feed(delta))
        finally:
            close = getattr(stream, "aclose", None)  # async generators; a bare iterator may have none
            if close is not None:
                await close()

    try:
        await asyncio.wait_for(consume(), timeout_s)
    except TimeoutError:
        reason, status = "timeout", "cancelled"
    except Exception as e:  # a dead Reasoner is a result to record, not a crash of the evaluation
        err = e if isinstance(e, ReasonerError) else ReasonerError(f"{type(e).__name__}: {e}", "unknown")
        reason, status = "error", "error"
        events.append(ErrorEvent(ts(), "reasoner", err.category, str(err)))
    add_chunks(chunker.flush())
    reply = sanitize("".join(pieces))
    events.append(ReasonerEnded(ts(), len(chunks), status))
    events.append(PhraseEnded(ts(), 0, reply, "chunk", None, len(pieces), reason != "done"))
    events.append(TurnEnded(ts(), reason, reply))
    return events
