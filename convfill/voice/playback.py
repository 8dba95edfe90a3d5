"""What the listener hears: the audio clock a voice-mode turn is scheduled against, and the record of it.

One `Playback` per voice connection, fed by three parties (all on the event loop):
  * the engine: `begin_turn`, `follow` (a task reporting each sentence as heard when it ends),
    `phrase_generated`, `remaining_ms` (how much audio is still to be heard: the audio-paced filler rule
    reads it), `drained` (a voice turn ends when its audio has been played) and `finish_turn` (what was
    heard, and the turn's `VoiceMetrics`);
  * the speaker (`speaker.py`): `audio_sent` for every sentence it synthesized and sent, `phrase_sent` when a
    phrase has no more audio to come;
  * the listener (the browser, through `channel.py`): `started` when a sentence is scheduled to play,
    `cut` when barge-in stopped it, `first_audio` with its own end-of-speech -> first-audio measurement.

Times are on the engine's clock, so whole voice turns run on `FakeClock` in tests. Only audio that
started playing counts as heard; a sentence cut short counts up to the word where it stopped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..aio import wait_or_timeout
from ..clock import Clock, MonotonicClock
from ..events import AudioHeard, Event, VoiceMetrics
from ..prompt import sanitize

log = logging.getLogger(__name__)

EST_MS_PER_CHAR = 62.0  # Piper's joe-medium voice speaks ~16 characters/s; used until the real length is known
DEAD_AIR_MS = 300.0  # a silence longer than this inside a turn's audio is dead air
UNREPORTED_S = 3.0  # audio the listener never reported is taken as playing from when it was sent


@dataclass
class Utterance:
    """The user's speech that produced the next turn's message (measured by the channel)."""

    text: str
    asr_ms: float
    audio_s: float
    endpoint_ms: float | None = None
    eos_to_transcript_ms: float | None = None
    transcript_at: float = field(default_factory=time.perf_counter)  # when the transcript went to the browser


@dataclass
class _Piece:
    """One synthesized sentence of a phrase, from sent to heard."""

    phrase_index: int
    seq: int
    text: str
    duration_ms: float
    sent_ms: float
    start_ms: float | None = None  # clock ms at which it starts (started) playing
    heard_ms: float | None = None  # how much of it played, when cut
    reported: bool = False  # settled: heard (heard_text set) or never played (heard_text None)
    heard_text: str | None = None

    def end_ms(self) -> float:
        return (self.start_ms or self.sent_ms) + (self.duration_ms if self.heard_ms is None else self.heard_ms)

    def overdue(self, now: float) -> bool:
        """Sent long ago and never reported by the listener: taken as playing from when it was sent."""
        return self.start_ms is None and now - self.sent_ms >= UNREPORTED_S * 1000


def cut_text(text: str, fraction: float) -> str:
    """The words of `text` heard when playback stopped `fraction` of the way through it."""
    words = text.split()
    return " ".join(words[:round(len(words) * max(0.0, min(1.0, fraction)))])


class Playback:
    """The listener's audio queue for one voice connection (see the module docstring)."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock: Clock = clock or MonotonicClock()
        self.closed = False
        self.utterance: Utterance | None = None  # waiting for the turn its transcript starts
        self.turn_id: str | None = None
        self._changed: asyncio.Event | None = None
        self._new_turn()

    def _new_turn(self) -> None:
        self._t0 = self.clock.now_ms()
        self._emit: Callable[[Event], None] | None = None
        self._on_change: Callable[[], None] | None = None
        self._pieces: dict[tuple[int, int], _Piece] = {}
        self._expected: dict[int, float] = {}  # phrase -> estimated ms of its audio not sent yet
        self._sent_chars: dict[int, int] = {}
        self._done_phrases: set[int] = set()
        self._first_byte: dict[int, float] = {}
        self._cut_at: float | None = None
        self._client_v2v: float | None = None
        self._utt: Utterance | None = None
        self._pacing = "text"
        self._turn_started_at = time.perf_counter()

    # ---------------------------------------------------------------------------------------- engine
    def begin_turn(self, turn_id: str, user: str, emit: Callable[[Event], None], clock: Clock,
                   on_change: Callable[[], None] | None = None, pacing: str = "audio") -> None:
        """A turn starts speaking to this listener; the pending utterance is its, if its transcript is `user`."""
        self.clock = clock
        self._new_turn()
        self.turn_id, self._emit, self._on_change, self._pacing = turn_id, emit, on_change, pacing
        if self.utterance is not None and sanitize(self.utterance.text) == user:
            self._utt = self.utterance
        self.utterance = None

    def phrase_generated(self, phrase_index: int, text: str) -> None:
        """The Talker finished a phrase: its audio is expected (estimated from its length until sent)."""
        if not text.strip() or phrase_index in self._done_phrases:
            return
        left = len(text) - self._sent_chars.get(phrase_index, 0)
        self._expected[phrase_index] = max(0.0, left * EST_MS_PER_CHAR)
        self._notify()

    @property
    def interrupted(self) -> bool:
        """Playback of this turn was stopped (barge-in, Stop, or the listener left): nothing more is heard."""
        return self._cut_at is not None

    def remaining_ms(self) -> float:
        """Audio the listener has not heard yet: scheduled, sent but not scheduled, and not synthesized yet."""
        if self._cut_at is not None:
            return 0.0
        now = self.clock.now_ms()
        unscheduled = sum(p.duration_ms for p in self._pieces.values() if p.start_ms is None)
        ends = [p.end_ms() for p in self._pieces.values() if p.start_ms is not None]
        scheduled = max(0.0, max(ends) - now) if ends else 0.0
        return scheduled + unscheduled + sum(self._expected.values())

    async def follow(self) -> None:
        """For the whole turn: report each sentence as heard when its playback ends (run as a task)."""
        while True:
            self._report_finished()
            now = self.clock.now_ms()
            pending = [p for p in self._pieces.values() if not p.reported]
            ends = [p.end_ms() for p in pending if p.start_ms is not None]
            ends += [p.sent_ms + UNREPORTED_S * 1000 for p in pending if p.start_ms is None]
            deadline = min((e for e in ends if e > now), default=None)
            await wait_or_timeout(self._event(), self.clock,
                                  None if deadline is None else (deadline - now) / 1000.0 + 0.001)

    async def drained(self) -> None:
        """Return once every expected phrase's audio has been sent and heard (or the listener left, or
        playback was cut). `follow` must be running."""
        while not self.closed and self._cut_at is None:
            waiting = [i for i in self._expected if i not in self._done_phrases]
            if not waiting and all(p.reported for p in self._pieces.values()):
                return
            await wait_or_timeout(self._event(), self.clock, None)

    def finish_turn(self) -> tuple[str, VoiceMetrics]:
        """End the turn: report what was heard (cut at the barge-in, or now) and return (reply, metrics)."""
        now = self.clock.now_ms()
        cut_at = self._cut_at if self._cut_at is not None else now
        for p in sorted(self._pieces.values(), key=lambda p: (p.phrase_index, p.seq)):
            if p.reported:
                continue
            start = p.sent_ms if p.overdue(now) else p.start_ms
            if start is None or start >= cut_at:
                p.reported = True  # never played: not heard
                continue
            p.start_ms = start
            if p.heard_ms is None and start + p.duration_ms > cut_at:
                p.heard_ms = cut_at - start
            self._report(p)
        return self.reply(), self._metrics(now)

    def reply(self) -> str:
        """What the listener heard this turn, phrase by phrase."""
        heard = sorted((p for p in self._pieces.values() if p.heard_text),
                       key=lambda p: (p.phrase_index, p.seq))
        return " ".join(p.heard_text for p in heard)

    # --------------------------------------------------------------------------------------- speaker
    def audio_sent(self, phrase_index: int, seq: int, text: str, duration_ms: float,
                   first_byte_ms: float | None = None) -> None:
        """A synthesized sentence went to the listener."""
        self._pieces[(phrase_index, seq)] = _Piece(phrase_index, seq, text, duration_ms, self.clock.now_ms())
        self._sent_chars[phrase_index] = self._sent_chars.get(phrase_index, 0) + len(text) + 1
        if phrase_index in self._expected:
            self._expected[phrase_index] = max(0.0, self._expected[phrase_index] - (len(text) + 1) * EST_MS_PER_CHAR)
        if seq == 0 and first_byte_ms is not None:
            self._first_byte[phrase_index] = first_byte_ms
        self._notify()

    def phrase_sent(self, phrase_index: int) -> None:
        """A phrase has no more audio to come (all its sentences sent, or nothing to say)."""
        self._done_phrases.add(phrase_index)
        self._expected.pop(phrase_index, None)
        self._notify()

    # -------------------------------------------------------------------------------------- listener
    def started(self, turn_id: str, phrase_index: int, seq: int, start_in_ms: float) -> None:
        """The listener scheduled a sentence to start playing `start_in_ms` from now."""
        p = self._pieces.get((phrase_index, seq)) if turn_id == self.turn_id else None
        if p is None or p.start_ms is not None:
            return
        p.start_ms = self.clock.now_ms() + max(0.0, min(float(start_in_ms), 600_000.0))
        self._notify()

    def cut(self, turn_id: str, phrase_index: int, seq: int, played_ms: float) -> None:
        """Barge-in: the listener stopped this sentence after `played_ms`; nothing after it is heard."""
        p = self._pieces.get((phrase_index, seq)) if turn_id == self.turn_id else None
        if p is None or p.start_ms is None:
            return
        p.heard_ms = max(0.0, min(float(played_ms), p.duration_ms))
        self._cut_at = p.start_ms + p.heard_ms
        self._notify()

    def stop_all(self, turn_id: str) -> None:
        """The listener stopped everything now (barge-in with nothing playing, or Stop)."""
        if turn_id == self.turn_id and self._cut_at is None:
            self._cut_at = self.clock.now_ms()
            self._notify()

    def first_audio(self, turn_id: str, eos_to_first_audio_ms: float | None) -> None:
        """The listener's own end-of-speech -> first audio played measurement for this turn."""
        if turn_id == self.turn_id and eos_to_first_audio_ms is not None and 0 <= eos_to_first_audio_ms < 600_000:
            self._client_v2v = float(eos_to_first_audio_ms)

    def close(self) -> None:
        """The listener left: nothing more will be heard."""
        self.closed = True
        if self._cut_at is None and self.turn_id is not None:
            self._cut_at = self.clock.now_ms()
        self._notify()

    # -------------------------------------------------------------------------------------- internals
    def _event(self) -> asyncio.Event:
        if self._changed is None:
            self._changed = asyncio.Event()
        self._changed.clear()
        return self._changed

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
        if self._on_change is not None:
            self._on_change()

    def _report_finished(self) -> None:
        now = self.clock.now_ms()
        for p in sorted(self._pieces.values(), key=lambda p: (p.phrase_index, p.seq)):
            if p.reported:
                continue
            if p.overdue(now):
                log.warning("listener never reported phrase %d/%d; taking it as played", p.phrase_index, p.seq)
                p.start_ms = p.sent_ms
            if p.start_ms is not None and p.end_ms() <= now and (self._cut_at is None or p.start_ms < self._cut_at):
                self._report(p)

    def _report(self, p: _Piece) -> None:
        p.reported = True
        self._notify()
        cut = p.heard_ms is not None and p.heard_ms < p.duration_ms
        p.heard_text = cut_text(p.text, p.heard_ms / p.duration_ms if cut and p.duration_ms else 1.0)
        if self._emit is not None:
            self._emit(AudioHeard(self._rel(self.clock.now_ms()), p.phrase_index, p.seq, self._rel(p.start_ms),
                                  self._rel(p.end_ms()), p.heard_text, cut))

    def _rel(self, t: float) -> float:
        return round(t - self._t0, 3)

    def _metrics(self, now: float) -> VoiceMetrics:
        spans = sorted((p.start_ms, p.end_ms()) for p in self._pieces.values()
                       if p.heard_text is not None)
        voiced = self._rel(spans[0][0]) if spans else None
        dead = []
        end = None
        for s, e in spans:
            if end is not None and s - end > DEAD_AIR_MS:
                dead.append(round(s - end, 1))
            end = e if end is None else max(end, e)
        u = self._utt
        v2v = self._client_v2v
        if v2v is None and u is not None and u.eos_to_transcript_ms is not None and voiced is not None:
            v2v = round(u.eos_to_transcript_ms + (self._turn_started_at - u.transcript_at) * 1000 + voiced, 1)
        return VoiceMetrics(self._rel(now), asr_ms=u.asr_ms if u else None, audio_s=u.audio_s if u else None,
                            endpoint_ms=u.endpoint_ms if u else None,
                            eos_to_transcript_ms=u.eos_to_transcript_ms if u else None, voice_to_voice_ms=v2v,
                            voiced_first_ms=voiced,
                            tts_first_byte_ms=[round(self._first_byte[i], 1) for i in sorted(self._first_byte)],
                            dead_air_ms=dead, pacing=self._pacing)
