"""Speaks a voiced turn: every Talker phrase goes to TTS as soon as its first sentence exists.

An engine observer (`on_event`, called on the event loop): token deltas are cut into sentences; each complete
sentence is queued for synthesis at once, the rest of a phrase when the phrase ends. One worker task per
listener synthesizes in order on the shared TTS thread, sends the audio and tells the `Playback` what it
sent, so the audio-paced filler rule and the "heard" record see it. Audio of a turn that is no longer the
listener's current one is dropped, never sent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ..events import Event, PhraseDelta, PhraseEnded, PhraseStarted, TurnEnded, TurnStarted
from .playback import Playback
from .protocol import pack_audio
from .tts import split_sentences

log = logging.getLogger(__name__)

@dataclass
class _Job:
    turn_id: str
    phrase_index: int
    text: str | None  # None: the phrase is over
    queued_at: float


class Speaker:
    """One listener's speech output.

    Args:
        synthesize: async `text -> list[Speech]` (the shared TTS, run off the event loop).
        playback: the listener's `Playback`.
        send_audio: async, sends one binary audio frame.
        send_json: async, sends one control message.
    """

    def __init__(self, synthesize: Callable[[str], Awaitable[list]], playback: Playback,
                 send_audio: Callable[[bytes], Awaitable[None]], send_json: Callable[[dict], Awaitable[None]]):
        self.synthesize, self.playback = synthesize, playback
        self.send_audio, self.send_json = send_audio, send_json
        self.turn_id: str | None = None
        self._text: dict[int, str] = {}
        self._queued: dict[int, int] = {}  # characters of each phrase already queued for speech
        self._queue: asyncio.Queue[_Job | dict] = asyncio.Queue()
        self._worker: asyncio.Task | None = None
        self._seq: dict[tuple[str, int], int] = {}  # sentences sent per (turn, phrase)

    # Called synchronously by the engine for every event of the session's turns.
    def on_event(self, ev: Event) -> None:
        if isinstance(ev, TurnStarted):
            if self.playback.turn_id != ev.turn_id:  # not a voiced turn (the mic is off for it)
                self.turn_id = None
                return
            self.turn_id, self._text, self._queued, self._seq = ev.turn_id, {}, {}, {}
            self._put({"type": "turn", "turn": ev.turn_id})
            return
        if self.turn_id is None:
            return
        if isinstance(ev, PhraseStarted):
            self._text[ev.phrase_index], self._queued[ev.phrase_index] = "", 0
        elif isinstance(ev, PhraseDelta):
            text = self._text.get(ev.phrase_index, "") + ev.text
            self._text[ev.phrase_index] = text
            done = self._queued.get(ev.phrase_index, 0)
            sentences, rest = split_sentences(text[done:])
            for s in sentences:
                self._say(ev.phrase_index, s)
            self._queued[ev.phrase_index] = len(text) - len(rest)
        elif isinstance(ev, PhraseEnded):
            final, done = ev.text, self._queued.get(ev.phrase_index, 0)
            said = self._text.get(ev.phrase_index, "")[:done].strip()
            rest = final[len(said):] if said and final.startswith(said) else (final if not said else "")
            if rest.strip():
                self._say(ev.phrase_index, rest.strip())
            self._put(_Job(self.turn_id, ev.phrase_index, None, time.perf_counter()))
        elif isinstance(ev, TurnEnded):
            if ev.reason != "done":  # stop the listener's audio at once, not after queued speech
                self._send_now({"type": "cancel", "turn": self.turn_id})
            self._put({"type": "end", "turn": self.turn_id, "reason": ev.reason})
            self.turn_id = None

    def _say(self, phrase_index: int, text: str) -> None:
        self._put(_Job(self.turn_id, phrase_index, text, time.perf_counter()))

    def _put(self, item) -> None:
        self._queue.put_nowait(item)
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._work())

    def _send_now(self, msg: dict) -> None:
        asyncio.get_running_loop().create_task(self._safe(self.send_json(msg)))

    @staticmethod
    async def _safe(aw: Awaitable) -> None:
        try:
            await aw
        except Exception:  # the listener left: nothing to tell
            log.debug("voice send failed", exc_info=True)

    async def _work(self) -> None:
        seq = self._seq
        while not self._queue.empty():
            job = self._queue.get_nowait()
            if isinstance(job, dict):
                await self._safe(self.send_json(job))
                continue
            if job.turn_id != self.playback.turn_id or self.playback.interrupted:
                continue  # an old or cut-off turn's speech: never synthesized, never sent
            if job.text is None:
                self.playback.phrase_sent(job.phrase_index)
                continue
            try:
                speeches = await self.synthesize(job.text)
            except Exception as e:  # a TTS failure must not end the turn: the text chat still shows it
                log.exception("TTS failed")
                await self._safe(self.send_json({"type": "error", "message": f"Speech synthesis failed: {e}"}))
                continue
            first_byte_ms = (time.perf_counter() - job.queued_at) * 1000.0
            for sp in speeches:
                if job.turn_id != self.playback.turn_id or self.playback.interrupted:
                    break  # cut off while synthesizing
                k = (job.turn_id, job.phrase_index)
                n = seq.get(k, 0)
                seq[k] = n + 1
                header = {"turn": job.turn_id, "phrase": job.phrase_index, "seq": n, "text": sp.text,
                          "rate": sp.sample_rate, "samples": len(sp.pcm) // 2}
                self.playback.audio_sent(job.phrase_index, n, sp.text, sp.duration_ms,
                                         first_byte_ms if n == 0 else None)
                await self._safe(self.send_audio(pack_audio(header, sp.pcm)))

    async def close(self) -> None:
        if self._worker is not None and not self._worker.done():
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
