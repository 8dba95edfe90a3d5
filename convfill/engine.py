"""The turn engine: schedules Talker phrases against a streaming Reasoner, on an injectable clock.

One turn:
  * the first `<sil>` filler starts at once, while the Reasoner starts thinking;
  * each knowledge chunk becomes a phrase as soon as the Talker is free; queued knowledge always goes
    before a filler (pre-emption);
  * when nothing arrived for `d` = `silence_s` and the Talker is idle, another `<sil>` filler is said,
    at most `max_fillers` per turn;
  * a Reasoner failure is reported as an `ErrorEvent` and the Talker says so honestly, then the turn ends;
  * a new message (or `cancel()`) cancels the turn - Reasoner stream included - and the turn still ends
    with `TurnEnded(reason="cancelled")`; `turn_timeout_s` ends it with reason "timeout".

Voice mode (`engine.playback` set, see `convfill/voice/playback.py`): the same schedule, except that with
`filler_pacing="audio"` a `<sil>` filler waits until the listener's audio would run dry (`filler_lead_s`
before it does, and never sooner than `d`), and the turn ends only once its audio has been heard; the
reply on record (and in the next prompt) is what was heard, cut where barge-in stopped it.

The Talker sees the previous turn (user + full reply); the Reasoner sees the last `history_turns` turns
with what the Talker actually said. Every `t_ms` is read from the clock, relative to the turn start.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass, field

from .aio import wait_or_timeout
from .chunker import chunk_stream
from .clock import Clock, MonotonicClock
from .config import EngineConfig
from .errors import InputError, ReasonerError
from .events import (ChunkArrived, ErrorEvent, Event, FirstToken, PhraseDelta, PhraseEnded, PhraseStarted,
                     ReasonerEnded, SilInjected, TurnEnded, TurnStarted)
from .prompt import PhraseContext, clean_output, sanitize
from .reasoners.base import Message, Reasoner, ReasonerRequest
from .talkers.base import Talker
from .talkers.slots import VISITOR
from .voice.playback import Playback

log = logging.getLogger(__name__)

Observer = Callable[[Event], None]


@dataclass
class TurnRecord:
    """A finished turn as the next turns see it."""

    user: str
    reply: str
    chunks: list[str] = field(default_factory=list)


class _TurnTimeout(Exception):
    pass


class _ReasonerStalled(ReasonerError):
    def __init__(self, seconds: float):
        super().__init__(f"The Reasoner sent nothing for {seconds:g} s", "timeout")


@dataclass
class _Turn:
    """Mutable state of the running turn, shared by its Talker loop and Reasoner pump."""

    turn_id: str
    user: str
    t0: float
    emit: Callable[[Event], None]
    queue: collections.deque = field(default_factory=collections.deque)  # (chunk_index, text)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    phrases: list[str] = field(default_factory=list)  # what was said (the next phrase's context)
    started: int = 0  # phrases started, said or empty: the next phrase's index (indexes never repeat)
    chunks: list[str] = field(default_factory=list)
    fillers: int = 0
    last_activity: float = 0.0
    reasoner_done: bool = False
    reasoner_error: ReasonerError | None = None
    playback: Playback | None = None


class Engine:
    """Runs conversational-infill turns for one conversation (one per user session).

    Args:
        talker: the local model that speaks.
        reasoner: the knowledge source; None runs Talker-only (fillers, then the turn ends).
        config: scheduling settings.
        clock: time source; `FakeClock` in tests.
        observers: callables receiving every event (e.g. the SQLite recorder).
        visitor: who this conversation is for, so a shared Talker keeps this visitor's cache for them
            (`talkers.slots.VISITOR`); default: one of its own.
    """

    def __init__(self, talker: Talker, reasoner: Reasoner | None = None, config: EngineConfig | None = None,
                 clock: Clock | None = None, observers: list[Observer] | tuple[Observer, ...] = (),
                 visitor: object | None = None):
        self.talker, self.reasoner = talker, reasoner
        self.visitor = object() if visitor is None else visitor  # a token: a Talker keeps it, not this engine
        self.config = config or EngineConfig()
        self.clock = clock or MonotonicClock()
        self.observers = list(observers)
        self.history: list[TurnRecord] = []
        self.playback: Playback | None = None  # voice mode: the listener's audio (set per turn by the app)
        self._running: asyncio.Task | None = None
        self._warming: asyncio.Future | None = None

    # ----------------------------------------------------------------------------------------------- API
    def check_input(self, text: str) -> str:
        """The sanitised message, or InputError saying why it cannot be used."""
        if len(text) > self.config.max_user_chars:
            raise InputError(f"Message is {len(text):,} characters; the limit is "
                             f"{self.config.max_user_chars:,}. Shorten it and send again.")
        clean = sanitize(text)
        if not clean:
            raise InputError("Message is empty (control tokens are removed). Type something to say.")
        return clean

    async def turn(self, text: str) -> AsyncIterator[Event]:
        """Run one turn for `text`, yielding its events; ends with `TurnEnded`.

        Starting a turn while another runs cancels the other first (barge-in). Closing this iterator
        early cancels the turn.
        """
        user = self.check_input(text)
        await self.cancel()
        q: asyncio.Queue[Event] = asyncio.Queue()
        runner = asyncio.create_task(self._run(user, q.put_nowait))
        self._running = runner
        try:
            while True:
                ev = await q.get()
                yield ev
                if isinstance(ev, TurnEnded):
                    break
        finally:
            if not runner.done():
                runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)

    async def prefill(self, text: str) -> bool:
        """Evaluate the next turn's first-phrase prompt for `text`, the message being typed (or a partial
        transcript), into the Talker's cache, so Send only samples. Skipped (False) while a turn runs (its
        generation has priority), for text a turn would refuse, and when turns start without a filler."""
        if self._running is not None and not self._running.done() or self.config.max_fillers <= 0:
            return False
        if len(text) > self.config.max_user_chars or not (user := sanitize(text)):
            return False
        token = VISITOR.set(self.visitor)
        try:
            await self.talker.prefill(self._phrase_context(user, None, ()))
        finally:
            VISITOR.reset(token)
        return True

    async def cancel(self) -> None:
        """Cancel the running turn, if any, and wait until it has emitted `TurnEnded`."""
        task, self._running = self._running, None
        if task and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def reset(self) -> None:
        """Forget the conversation (the next turn has no history)."""
        self.history.clear()

    # -------------------------------------------------------------------------------------------- turn
    async def _run(self, user: str, put: Callable[[Event], None]) -> None:
        VISITOR.set(self.visitor)  # this task's own context: its phrases and the warm-up after it inherit it
        cfg = self.config
        t0 = self.clock.now_ms()

        def emit(ev: Event) -> None:
            put(ev)
            for obs in self.observers:
                try:
                    obs(ev)
                except Exception:  # an observer must never break a turn
                    log.exception("observer failed on %s", ev.type)

        st = _Turn(turn_id=uuid.uuid4().hex, user=user, t0=t0, emit=emit, last_activity=t0)
        playback = st.playback = self.playback
        if playback is not None:  # before TurnStarted: the speaker knows from it that this turn is voiced
            playback.begin_turn(st.turn_id, user, emit, self.clock, st.changed.set, cfg.filler_pacing)
        emit(TurnStarted(0.0, st.turn_id, user, time.time()))
        reason = "done"
        try:
            try:
                async with asyncio.TaskGroup() as tg:
                    pump = tg.create_task(self._pump(st)) if self.reasoner else None
                    timer = tg.create_task(self._deadline(cfg.turn_timeout_s))
                    follower = tg.create_task(playback.follow()) if playback is not None else None
                    await self._talk(st)
                    if playback is not None:
                        await playback.drained()  # a spoken turn is over when it has been heard
                        follower.cancel()
                        if playback.interrupted:  # the listener cut it off before its end
                            reason = "cancelled"
                    timer.cancel()
                    if pump:
                        pump.cancel()
            except* _TurnTimeout:
                reason = "timeout"
        except asyncio.CancelledError:
            reason = "cancelled"
            raise
        except Exception as e:  # a Talker crash: report it, end the turn cleanly
            reason = "error"
            inner = e.exceptions[0] if isinstance(e, BaseExceptionGroup) else e
            log.exception("turn failed")
            emit(ErrorEvent(self._ts(st), "talker", "internal", f"{type(inner).__name__}: {inner}"))
        finally:
            reply = " ".join(st.phrases)
            if playback is not None:
                reply, voice = playback.finish_turn()
                emit(voice)
            self.history.append(TurnRecord(user, reply, list(st.chunks)))
            emit(TurnEnded(self._ts(st), reason, reply))
            if reason != "cancelled":
                # While the user reads/listens, pre-fill the Talker's cache with this turn (the next
                # prompt's prefix), so the next first token does not wait for it.
                self._warming = asyncio.ensure_future(self.talker.warm(PhraseContext("", prev_user=user,
                                                                                     prev_reply=reply)))

    async def _deadline(self, seconds: float) -> None:
        await self.clock.sleep(seconds)
        raise _TurnTimeout()

    def _ts(self, st: _Turn) -> float:
        return round(self.clock.now_ms() - st.t0, 3)

    # ----------------------------------------------------------------------------------- talker side
    async def _talk(self, st: _Turn) -> None:
        cfg = self.config
        if cfg.max_fillers > 0:
            await self._filler(st, "turn_start")
        while len(st.phrases) < cfg.max_phrases:
            st.changed.clear()
            if st.playback is not None and st.playback.interrupted:
                return  # nobody is listening to this turn any more
            if st.queue:  # knowledge first: it pre-empts any pending filler
                idx, chunk = st.queue.popleft()
                await self._phrase(st, "chunk", chunk, idx)
                continue
            if st.reasoner_error is not None:
                await self._fixed_phrase(st, cfg.partial_error_phrase if st.chunks else cfg.error_phrase)
                return
            if st.reasoner_done or self.reasoner is None and st.fillers >= cfg.max_fillers:
                return
            wait = None
            if st.fillers < cfg.max_fillers:
                wait = cfg.silence_s - (self.clock.now_ms() - st.last_activity) / 1000.0
                if st.playback is not None and cfg.filler_pacing == "audio":  # only before the audio runs dry
                    wait = max(wait, st.playback.remaining_ms() / 1000.0 - cfg.filler_lead_s)
                if wait <= 0:
                    await self._filler(st, "silence")
                    continue
            await wait_or_timeout(st.changed, self.clock, wait)

    async def _filler(self, st: _Turn, reason: str) -> None:
        st.fillers += 1
        st.emit(SilInjected(self._ts(st), st.started, reason))
        await self._phrase(st, "sil", None, None)

    def _context(self, st: _Turn, knowledge: str | None) -> PhraseContext:
        return self._phrase_context(st.user, knowledge, tuple(st.phrases))

    def _phrase_context(self, user: str, knowledge: str | None, earlier: tuple[str, ...]) -> PhraseContext:
        prev = self.history[-1] if self.history else None
        return PhraseContext(user=user, knowledge=knowledge, earlier=earlier,
                             prev_user=prev.user if prev else None, prev_reply=prev.reply if prev else None)

    async def _phrase(self, st: _Turn, source: str, knowledge: str | None, chunk_index: int | None) -> None:
        idx, st.started = st.started, st.started + 1
        st.emit(PhraseStarted(self._ts(st), idx, source, chunk_index))
        pieces: list[str] = []
        cancelled = True
        try:
            stream = self.talker.stream(self._context(st, knowledge), self.config.max_phrase_tokens)
            async with aclosing(stream) as tokens:
                async for piece in tokens:
                    if not pieces:
                        st.emit(FirstToken(self._ts(st), idx))
                    pieces.append(piece)
                    st.emit(PhraseDelta(self._ts(st), idx, piece))
            cancelled = False
        finally:
            # Runs on cancellation too, so a cut-off phrase is still on the timeline.
            text = clean_output("".join(pieces), self.talker.template)
            st.emit(PhraseEnded(self._ts(st), idx, text, source, chunk_index, len(pieces), cancelled))
            if text:
                st.phrases.append(text)
                if st.playback is not None:
                    st.playback.phrase_generated(idx, text)
            st.last_activity = self.clock.now_ms()

    async def _fixed_phrase(self, st: _Turn, text: str) -> None:
        """Say a fixed sentence (the honest error phrase) without the model."""
        idx, st.started = st.started, st.started + 1
        ts = self._ts(st)
        st.emit(PhraseStarted(ts, idx, "error", None))
        st.emit(FirstToken(ts, idx))
        st.emit(PhraseDelta(ts, idx, text))
        st.emit(PhraseEnded(ts, idx, text, "error", None, 0, False))
        st.phrases.append(text)
        if st.playback is not None:
            st.playback.phrase_generated(idx, text)

    # --------------------------------------------------------------------------------- reasoner side
    def _request(self, st: _Turn) -> ReasonerRequest:
        history: list[Message] = []
        n = self.config.history_turns
        for rec in self.history[-n:] if n else []:
            history += [Message("user", rec.user), Message("assistant", rec.reply)]
        return ReasonerRequest(st.user, tuple(history))

    async def _pump(self, st: _Turn) -> None:
        assert self.reasoner is not None
        status = "done"
        try:
            async with aclosing(chunk_stream(self.reasoner.stream(self._request(st)))) as chunks:
                while True:
                    nxt = asyncio.ensure_future(anext(chunks))
                    sleeper = asyncio.ensure_future(self.clock.sleep(self.config.reasoner_timeout_s))
                    try:
                        await asyncio.wait({nxt, sleeper}, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        sleeper.cancel()
                        if not nxt.done():
                            nxt.cancel()
                            await asyncio.gather(nxt, return_exceptions=True)
                    if not nxt.done() or nxt.cancelled():
                        raise _ReasonerStalled(self.config.reasoner_timeout_s)
                    try:
                        chunk = sanitize(nxt.result())
                    except StopAsyncIteration:
                        break
                    if not chunk:
                        continue
                    idx = len(st.chunks)
                    st.chunks.append(chunk)
                    st.queue.append((idx, chunk))
                    st.last_activity = self.clock.now_ms()
                    st.emit(ChunkArrived(self._ts(st), idx, chunk))
                    st.changed.set()
        except asyncio.CancelledError:
            status = "cancelled"
            raise
        except Exception as e:
            status = "error"
            err = e if isinstance(e, ReasonerError) else ReasonerError(f"{type(e).__name__}: {e}", "unknown")
            st.reasoner_error = err
            st.emit(ErrorEvent(self._ts(st), "reasoner", err.category, str(err)))
        finally:
            st.reasoner_done = True
            st.emit(ReasonerEnded(self._ts(st), len(st.chunks), status))
            st.changed.set()
