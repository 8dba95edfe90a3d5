"""A "Reasoner alone" turn: the Reasoner's streamed answer is what the user hears, as timeline events.

This is the baseline ConvFill hides latency against. Rather than invent a second latency formula, the
run is written as the same events an engine turn emits - one phrase (source "chunk") whose tokens are the
Reasoner's deltas, plus a `ChunkArrived` per completed sentence - so `convfill.metrics.turn_metrics`
reads it like any other turn: `talker_ttft_ms` (= first spoken token) and `first_knowledge_phrase_ms` are
the Reasoner's first token, `reasoner_first_chunk_ms` its first complete sentence.

Any `Reasoner` works through its public `stream()`; with the offline `local` Reasoner this is the small
local model answering on its own, with `oracle` it is the oracle's latency profile. `qa --mode reasoner` and
`ttft` run it over a data set; `alone` times one question, with the Reasoner in direct mode (`direct=True`,
`DIRECT_SYSTEM_PROMPT`: it answers conversationally rather than as a fact feed):

    python -m convfill.eval alone "Why is the sky blue?" --reasoner openai \\
        --base-url http://127.0.0.1:8080/v1 --model smollm2 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from dataclasses import replace

from ..chunker import SentenceChunker
from ..clock import Clock, MonotonicClock
from ..errors import ReasonerError
from ..events import (ChunkArrived, ErrorEvent, Event, FirstToken, PhraseDelta, PhraseEnded, PhraseStarted,
                      ReasonerEnded, TurnEnded, TurnStarted)
from ..metrics import summarize, turn_metrics
from ..parts import add_model_args, reasoner_spec
from ..prompt import sanitize
from ..reasoners import build_reasoner
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


async def direct_turns(reasoner: Reasoner, text: str, rounds: int = 1) -> list[list[Event]]:
    """`rounds` Reasoner-alone turns on `text`, one after another; then the Reasoner is closed."""
    try:
        return [await reasoner_turn(reasoner, text) for _ in range(rounds)]
    finally:
        await reasoner.aclose()


def cmd_alone(args) -> dict:
    """The `alone` command: the Reasoner flags' Reasoner in direct mode answers `text` `--rounds` times."""
    spec = replace(reasoner_spec(args, direct=True), max_tokens=args.max_tokens)
    turns = asyncio.run(direct_turns(build_reasoner(spec), args.text, args.rounds))
    for events in turns:  # a failed answer is no timing: say why, in one line
        for ev in events:
            if isinstance(ev, ErrorEvent):
                raise ReasonerError(ev.message, ev.category)
    metrics = [turn_metrics(events) for events in turns]
    answers = [{"text": events[-1].reply, "ttft_ms": m.talker_ttft_ms, "total_ms": m.total_ms}
               for events, m in zip(turns, metrics)]
    result = {"reasoner": spec.name, "model": spec.model or None, "rounds": args.rounds,
              "ttft_ms": summarize([m.talker_ttft_ms for m in metrics]),
              "total_ms": summarize([m.total_ms for m in metrics]), "answers": answers}
    text = f"{answers[-1]['text']}\nTTFT {result['ttft_ms']} ms | total {result['total_ms']} ms" if answers else ""
    return result if args.json else {**result, "_text": text}


def add_parser(sub) -> argparse.ArgumentParser:
    a = sub.add_parser("alone", help="the Reasoner-alone baseline on one question: time to the first token of "
                                     "its direct answer")
    a.add_argument("text", help="what the user says")
    a.add_argument("--max-tokens", type=int, default=None, help="answer length cap")
    a.add_argument("--rounds", type=int, default=1, help="repeat the request and summarise the timings")
    a.add_argument("--json", action="store_true", help="print one JSON object")
    add_model_args(a)
    a.set_defaults(func=cmd_alone)
    return a
