"""A Python voice client for a running app: speaks the browser's side of `protocol.py`, as voice.js does.

Used by the voice benchmark (`python -m convfill.eval voice`) and the app-level voice tests, so both go
through the app's own server (its `voice_start` server function, its socket, its `/chat` API). Playback is
simulated in real time: audio is "played" back to back from when it arrives, and reported like a browser
reports it, so voice-to-voice, dead air and barge-in are measured end to end.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from .protocol import IN_RATE, PATH, unpack_audio

FRAME_MS = 20
PREROLL_MS = 300  # voice.js's pre-roll: the utterance starts a little before the speech


@dataclass
class Played:
    """One sentence of the reply as this client played it (times: `time.perf_counter()` seconds)."""

    turn: str
    phrase: int
    seq: int
    text: str
    start: float
    duration_s: float
    cut_after_s: float | None = None


@dataclass
class VoiceTurn:
    """What one spoken question gave: the transcript, the reply's audio, and the latencies seen here."""

    transcript: str = ""
    asr_ms: float | None = None
    eos_to_transcript_ms: float | None = None
    eos_to_first_audio_ms: float | None = None
    played: list[Played] = field(default_factory=list)
    end_reason: str | None = None
    turn: str | None = None


def spoken(tts, text: str) -> bytes:
    """`text` spoken by `tts`, as the 16 kHz int16 mono PCM a browser sends (questions for tests and benches)."""
    from .audio import float_to_pcm16, pcm16_to_float, resample

    speech = list(tts.speak(text))
    x = pcm16_to_float(b"".join(s.pcm for s in speech))
    return float_to_pcm16(resample(x, speech[0].sample_rate, IN_RATE))


def component_id(url: str, elem_id: str) -> int:
    """The Gradio component id of the element `elem_id` in the app at `url`."""
    config = json.load(urllib.request.urlopen(f"{url.rstrip('/')}/config", timeout=30))
    return next(c["id"] for c in config["components"] if c.get("props", {}).get("elem_id") == elem_id)


def voice_start(url: str, options: dict | None = None, session_hash: str | None = None) -> dict:
    """Call the Chat tab's `voice_start` server function like the page does: {"token": ...} or {"error": ...}."""
    body = json.dumps({"session_hash": session_hash or uuid.uuid4().hex[:11], "component_id": component_id(url, "cf-voice"),
                       "fn_name": "voice_start", "data": options or {}}).encode()
    req = urllib.request.Request(f"{url.rstrip('/')}/gradio_api/component_server", body,
                                 {"Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(req, timeout=120))


class VoiceClient:
    """One listener connected to the app at `url` (use `async with`)."""

    def __init__(self, url: str, token: str | None = None, origin: str | None = None):
        self.url, self.token = url.rstrip("/"), token
        parts = urlsplit(self.url)
        self.origin = origin or f"{parts.scheme}://{parts.netloc}"
        self.ws = None
        self.ready: dict | None = None
        self.messages: list[dict] = []
        self.current: VoiceTurn | None = None
        self._transcripts: asyncio.Queue = asyncio.Queue()
        self._ends: dict[str, asyncio.Event] = {}
        self._turn_id: str | None = None
        self._play_end = 0.0
        self._eos = 0.0
        self._reader: asyncio.Task | None = None

    async def __aenter__(self) -> "VoiceClient":
        from websockets.asyncio.client import connect

        if self.token is None:
            answer = await asyncio.to_thread(voice_start, self.url)
            if "token" not in answer:
                raise RuntimeError(answer.get("error", answer))
            self.token = answer["token"]
        ws_url = self.url.replace("http", "ws", 1) + f"{PATH}?token={self.token}"
        self.ws = await connect(ws_url, origin=self.origin, max_size=8 << 20)
        self.ready = json.loads(await self.ws.recv())
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc) -> None:
        if self._reader is not None:
            self._reader.cancel()
        if self.ws is not None:
            await self.ws.close()

    async def send(self, msg: dict) -> None:
        await self.ws.send(json.dumps(msg))

    # ------------------------------------------------------------------------------------ speaking
    async def say(self, pcm16k: bytes, endpoint_ms: float = 600.0, realtime: bool = False,
                  barge_in: bool = False, timeout_s: float = 120.0, pause_ms: float | None = 200.0) -> VoiceTurn:
        """Speak `pcm16k` (int16 mono 16 kHz), end the utterance and wait for its transcript. With
        `barge_in`, first stop what is playing and report the cut, as the browser does at speech onset.
        With `pause_ms`, behave like voice.js's VAD: `speech_pause` after that much silence, then the rest
        of the `endpoint_ms` silence in real time, then `speech_end` (the end of speech, where latencies start)."""
        if barge_in:
            await self.stop_playback()
        await self.send({"type": "speech_start", "barge_in": barge_in})
        step = IN_RATE * FRAME_MS // 1000 * 2
        pcm16k = b"\0\0" * (IN_RATE * PREROLL_MS // 1000) + pcm16k  # voice.js sends what came just before
        for i in range(0, len(pcm16k), step):
            await self.ws.send(pcm16k[i:i + step])
            if realtime:
                await asyncio.sleep(FRAME_MS / 1000)
        if pause_ms is not None and endpoint_ms > pause_ms:  # the mic keeps streaming the silence, as a page's does
            await self._silence(pause_ms)
            await self.send({"type": "speech_pause"})
            await self._silence(endpoint_ms - pause_ms)
        self._eos = time.perf_counter()
        await self.send({"type": "speech_end", "endpoint_ms": endpoint_ms})
        msg = await asyncio.wait_for(self._transcripts.get(), timeout_s)
        turn = VoiceTurn(transcript=msg.get("text", ""), asr_ms=msg.get("asr_ms"),
                         eos_to_transcript_ms=round((time.perf_counter() - self._eos) * 1000, 1))
        if not turn.transcript:
            turn.end_reason = msg.get("reason", "no transcript")
        self.current = turn
        return turn

    async def _silence(self, ms: float) -> None:
        frame = b"\0\0" * (IN_RATE * FRAME_MS // 1000)
        for _ in range(int(ms // FRAME_MS)):
            await self.ws.send(frame)
            await asyncio.sleep(FRAME_MS / 1000)

    async def stop_playback(self) -> None:
        """Stop now: report the sentence being played as cut (or the turn as stopped)."""
        now = time.perf_counter()
        turn = self.current
        self._play_end = now
        if turn is None or turn.turn is None:
            return
        for p in turn.played:
            if p.start <= now < p.start + p.duration_s and p.cut_after_s is None:
                p.cut_after_s = now - p.start
                await self.send({"type": "cut", "turn": p.turn, "phrase": p.phrase, "seq": p.seq,
                                 "played_ms": round(p.cut_after_s * 1000, 1)})
                break
        else:
            await self.send({"type": "stopped", "turn": turn.turn})
        for p in turn.played:  # what was scheduled after now never plays
            if p.start > now:
                p.cut_after_s = 0.0
        self._turn_id = None

    async def heard(self, timeout_s: float = 300.0) -> VoiceTurn:
        """Wait until the current turn's audio has been played (the server's `end`), then return it."""
        deadline = time.perf_counter() + timeout_s
        while self.current.turn is None:
            if time.perf_counter() > deadline:
                raise TimeoutError("no voiced turn started")
            await asyncio.sleep(0.01)
        await asyncio.wait_for(self._ends.setdefault(self.current.turn, asyncio.Event()).wait(), timeout_s)
        return self.current

    # ----------------------------------------------------------------------------------- listening
    async def _read(self) -> None:
        async for raw in self.ws:
            if isinstance(raw, bytes):
                await self._audio(raw)
                continue
            msg = json.loads(raw)
            self.messages.append(msg)
            kind = msg.get("type")
            if kind == "transcript":
                self._transcripts.put_nowait(msg)
            elif kind == "turn":
                self._turn_id, self._play_end = msg["turn"], time.perf_counter()
                if self.current is not None:
                    self.current.turn = msg["turn"]
            elif kind == "cancel" and msg.get("turn") == self._turn_id:
                await self.stop_playback()
            elif kind == "end":
                if self.current is not None and self.current.turn == msg.get("turn"):
                    self.current.end_reason = msg.get("reason")
                self._ends.setdefault(msg.get("turn"), asyncio.Event()).set()

    async def _audio(self, frame: bytes) -> None:
        header, pcm = unpack_audio(frame)
        if header.get("turn") != self._turn_id or self.current is None:
            return  # an old turn's audio
        now = time.perf_counter()
        start = max(now + 0.02, self._play_end)
        duration = header["samples"] / header["rate"]
        self._play_end = start + duration
        first = not self.current.played
        self.current.played.append(Played(header["turn"], header["phrase"], header["seq"], header["text"], start,
                                          duration))
        await self.send({"type": "started", "turn": header["turn"], "phrase": header["phrase"],
                         "seq": header["seq"], "start_in_ms": round((start - now) * 1000, 1)})
        if first and self._eos:
            self.current.eos_to_first_audio_ms = round((start - self._eos) * 1000, 1)
            await self.send({"type": "first_audio", "turn": header["turn"],
                             "eos_to_first_audio_ms": self.current.eos_to_first_audio_ms})
