"""One voice connection (`VoiceChannel`) and the process-wide voice parts behind all of them (`VoiceService`).

A channel is opened by a Gradio call (`VoiceService.open`, after the app checked who may chat) and gets an
unguessable token; the browser then connects its WebSocket with that token, once. The channel owns the
listener's `Playback` and `Speaker`, collects one utterance at a time, transcribes it off the event loop and
sends the transcript back, and turns barge-in into a cancelled turn. The chat session that speaks through
it binds itself on its first voiced turn (`bind`), and no other session can.

The socket object only needs `receive()` (ASGI messages), `send_text`, `send_bytes` and `close`, so the
channel is tested with a fake socket and served by Starlette in the app (`convfill/ui/voice.py`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import os
import secrets
import time
from dataclasses import dataclass
from typing import Any

from ..errors import ConvFillError, InputError
from .playback import Playback, Utterance
from .protocol import IN_RATE, parse_client_message
from .speaker import Speaker

log = logging.getLogger(__name__)


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name) or default)
    except ValueError:
        return default


@dataclass(frozen=True)
class VoiceLimits:
    """What one visitor's voice may cost (env: `CONVFILL_MAX_UTTERANCE_S`, `CONVFILL_MAX_VOICE_CHANNELS`,
    `CONVFILL_MAX_ASR_WAITING`)."""

    max_utterance_s: float = 30.0
    max_channels: int = 16
    max_asr_waiting: int = 4  # utterances queued for the one ASR thread before newcomers are told "busy"
    connect_within_s: float = 60.0  # an opened channel nobody connects to is dropped after this

    @classmethod
    def from_env(cls) -> "VoiceLimits":
        return cls(max_utterance_s=_env_float("CONVFILL_MAX_UTTERANCE_S", cls.max_utterance_s),
                   max_channels=int(_env_float("CONVFILL_MAX_VOICE_CHANNELS", cls.max_channels)),
                   max_asr_waiting=int(_env_float("CONVFILL_MAX_ASR_WAITING", cls.max_asr_waiting)))


class VoiceService:
    """The loaded ASR and TTS (one thread each, shared by every channel) and the open channels.

    Args:
        asr: an `ASR`, or a one-line spec for `convfill.voice.load_asr` (None: offline Whisper base).
        tts: a `TTS`, or a spec for `load_tts` (None: the offline Piper voice).
    """

    def __init__(self, asr: Any = None, tts: Any = None, limits: VoiceLimits | None = None):
        self._asr, self._tts = asr, tts
        self.limits = limits or VoiceLimits.from_env()
        self.channels: dict[str, VoiceChannel] = {}
        self._asr_thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="convfill-asr")
        self._tts_thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="convfill-tts")
        self._asr_waiting = 0

    # ------------------------------------------------------------------------------------- models
    def load(self) -> None:
        """Blocking: load both models (VoiceLoadError with the reason); cheap once loaded."""
        from . import load_asr, load_tts

        if self._asr is None or isinstance(self._asr, str):
            self._asr = load_asr(self._asr)
        if self._tts is None or isinstance(self._tts, str):
            self._tts = load_tts(self._tts)

    @property
    def out_rate(self) -> int:
        return getattr(self._tts, "sample_rate", 22050)

    def models(self, asr: str = "", tts: str = "") -> tuple[Any, Any]:
        """Blocking: the (ASR, TTS) a visitor chose: blank = the server's own (`load`), else a spec for
        `load_asr` / `load_tts`, loaded once per process (VoiceLoadError when it cannot load)."""
        from . import load_asr, load_tts

        self.load()
        return (load_asr(asr) if asr.strip() else self._asr), (load_tts(tts) if tts.strip() else self._tts)

    async def transcribe(self, pcm: bytes, asr: Any = None):
        """The `Transcript` of 16 kHz int16 PCM, on the ASR thread; InputError("busy") when too many wait."""
        if self._asr_waiting >= self.limits.max_asr_waiting:
            raise InputError("Speech recognition is busy with other visitors; try again in a moment.")
        self._asr_waiting += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._asr_thread, (asr or self._asr).transcribe,
                                                                    pcm)
        finally:
            self._asr_waiting -= 1

    async def synthesize(self, text: str, tts: Any = None) -> list:
        """Every `Speech` of `text` (usually one sentence), on the TTS thread."""
        voice = tts or self._tts
        return await asyncio.get_running_loop().run_in_executor(self._tts_thread, lambda: list(voice.speak(text)))

    # ----------------------------------------------------------------------------------- channels
    def open(self, owner: str | None = None, asr: Any = None, tts: Any = None) -> "VoiceChannel":
        """A new channel with a fresh token (ConvFillError when the server has its maximum); `asr`/`tts`:
        the visitor's models (`models`), default the server's."""
        self._expire()
        if len(self.channels) >= self.limits.max_channels:
            raise ConvFillError(f"Voice is busy: {len(self.channels)} voice conversations are open. "
                                "Type instead, or try again in a minute.")
        ch = VoiceChannel(secrets.token_urlsafe(24), self, owner, asr, tts)
        self.channels[ch.token] = ch
        return ch

    def get(self, token: str | None) -> "VoiceChannel | None":
        return self.channels.get(token or "") if isinstance(token, str) and len(token) < 100 else None

    def _expire(self) -> None:
        now = time.monotonic()
        for token, ch in list(self.channels.items()):
            if ch.finished or not ch.connected and now - ch.opened_at > self.limits.connect_within_s:
                self.channels.pop(token, None)

    def close(self) -> None:
        self._asr_thread.shutdown(wait=False, cancel_futures=True)
        self._tts_thread.shutdown(wait=False, cancel_futures=True)


class VoiceChannel:
    """One listener: a socket, its `Playback`, its `Speaker`, and the chat session speaking through it."""

    def __init__(self, token: str, service: VoiceService, owner: str | None = None, asr: Any = None,
                 tts: Any = None):
        self.token, self.service, self.owner, self.asr, self.tts = token, service, owner, asr, tts
        self.playback = Playback()
        self.speaker: Speaker | None = None
        self.session: Any = None  # the ChatSession bound to it (convfill.ui.session)
        self.connected = self.finished = False
        self.opened_at = time.monotonic()
        self._ws: Any = None
        self._utterance: bytearray | None = None
        self._too_long = False
        self._asr_task: asyncio.Task | None = None
        self._early: asyncio.Task | None = None  # the transcription started at speech_pause

    @property
    def live(self) -> bool:
        """Speaking to someone: connected and not closed."""
        return self.connected and not self.finished

    def bind(self, session: Any) -> bool:
        """Let `session` speak through this channel; False when another session holds it."""
        if self.session is None:
            self.session = session
        return self.session is session

    def on_event(self, ev) -> None:
        """Engine events of the bound session's turns (forwarded by the session)."""
        if self.speaker is not None and self.live:
            self.speaker.on_event(ev)

    # ------------------------------------------------------------------------------------- socket
    async def serve(self, ws: Any) -> None:
        """Run the socket until the browser leaves (the socket is already accepted)."""
        if self.connected or self.finished:
            await ws.close(code=4409)
            return
        self.connected, self._ws = True, ws
        self.speaker = Speaker(lambda text: self.service.synthesize(text, self.tts), self.playback, ws.send_bytes,
                               self._send)
        await self._send({"type": "ready", "in_rate": IN_RATE, "out_rate": getattr(self.tts, "sample_rate", self.service.out_rate),
                          "max_utterance_s": self.service.limits.max_utterance_s})
        try:
            while True:
                msg = await ws.receive()
                if msg.get("type") == "websocket.disconnect":
                    break
                if msg.get("bytes") is not None:
                    self._audio(msg["bytes"])
                elif msg.get("text") is not None:
                    await self._message(msg["text"])
        finally:
            await self.close()

    async def _send(self, msg: dict) -> None:
        if self._ws is not None and not self.finished:
            await self._ws.send_text(json.dumps(msg))

    def _audio(self, data: bytes) -> None:
        if self._utterance is None or self._too_long:
            return  # audio outside an utterance is dropped, never kept
        limit = int(self.service.limits.max_utterance_s * IN_RATE) * 2
        if len(self._utterance) + len(data) > limit:
            self._too_long = True
            return
        self._utterance += data[:len(data) - len(data) % 2]

    async def _message(self, text: str) -> None:
        try:
            msg = parse_client_message(text)
        except (ValueError, json.JSONDecodeError) as e:
            await self._send({"type": "error", "message": f"Ignored a malformed message ({e})."})
            return
        kind, pb = msg["type"], self.playback
        if kind == "speech_start":
            self._utterance, self._too_long, self._early = bytearray(), False, None
            if msg.get("barge_in") and pb.turn_id is not None:
                pb.stop_all(pb.turn_id)
                await self.cancel_turn()
        elif kind == "speech_abort":
            self._utterance, self._early = None, None
        elif kind == "speech_pause":
            # Transcribe while the browser waits out the endpointing silence; used if no speech follows.
            if self._utterance and not self._too_long and self._early is None:
                task = asyncio.create_task(self.service.transcribe(bytes(self._utterance), self.asr))
                task.add_done_callback(self._early_done)
                self._early = task
        elif kind == "speech_resume":
            self._early = None
        elif kind == "speech_end":
            audio, too_long, self._utterance = self._utterance, self._too_long, None
            early, self._early = self._early, None
            if audio is None:
                return
            if too_long:
                await self._send({"type": "transcript", "text": "", "reason": "You spoke for longer than "
                                  f"{self.service.limits.max_utterance_s:g} s; say it in shorter pieces."})
                return
            if self._asr_task is not None and not self._asr_task.done():
                self._asr_task.cancel()  # a newer utterance replaces one still being transcribed
            self._asr_task = asyncio.create_task(self._transcribe(bytes(audio), msg.get("endpoint_ms"),
                                                                  early))
        elif kind == "started":
            pb.started(msg.get("turn", ""), msg.get("phrase", 0), msg.get("seq", 0), msg.get("start_in_ms", 0))
        elif kind == "cut":
            pb.cut(msg.get("turn", ""), msg.get("phrase", 0), msg.get("seq", 0), msg.get("played_ms", 0))
        elif kind == "stopped":
            pb.stop_all(msg.get("turn", ""))
        elif kind == "first_audio":
            pb.first_audio(msg.get("turn", ""), msg.get("eos_to_first_audio_ms"))

    async def _transcribe(self, pcm: bytes, endpoint_ms: float | None, early: asyncio.Task | None = None) -> None:
        eos = time.perf_counter()
        try:
            # What came after speech_pause was the endpointing silence, so the early transcript stands.
            tr = await (early if early is not None else self.service.transcribe(pcm, self.asr))
        except ConvFillError as e:
            await self._send({"type": "transcript", "text": "", "reason": str(e)})
            return
        except Exception as e:  # noqa: BLE001 - the listener hears why, the server keeps running
            log.exception("ASR failed")
            await self._send({"type": "transcript", "text": "", "reason": f"Speech recognition failed: {e}"})
            return
        if not tr.text:
            await self._send({"type": "transcript", "text": "", "reason": "no speech was recognised"})
            return
        now = time.perf_counter()
        self._prefill(tr.text)
        self.playback.utterance = Utterance(tr.text, round(tr.asr_ms, 1), round(tr.audio_s, 3), endpoint_ms,
                                            round((now - eos) * 1000, 1), transcript_at=now)
        await self._send({"type": "transcript", "text": tr.text, "asr_ms": round(tr.asr_ms, 1),
                          "audio_s": round(tr.audio_s, 3)})

    def _early_done(self, task: asyncio.Task) -> None:
        """The early transcript is ready, usually while the browser still waits out the endpoint: prefill its
        prompt now, unless the speaker went on (a voided transcript is never awaited, so its error is read)."""
        if task.cancelled() or task.exception() is not None:
            return
        if task is self._early and task.result().text:
            self._prefill(task.result().text)

    def _prefill(self, text: str) -> None:
        """Put the transcript's first-phrase prompt into the Talker's cache while the browser sends it back as
        the chat message (the typed path's prefill; only once this channel's session has had a turn)."""
        session = self.session
        if session is not None and getattr(session, "settings", None) is not None:
            task = asyncio.create_task(session.prefill(text, session.settings))
            task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def cancel_turn(self) -> None:
        """Barge-in: end the bound session's running turn (what was heard up to the cut is kept)."""
        if self.session is not None:
            await self.session.cancel()

    async def close(self) -> None:
        """The listener left: the running voiced turn ends, the channel is gone."""
        if self.finished:
            return
        self.finished = True
        self.playback.close()
        if self._asr_task is not None:
            self._asr_task.cancel()
        if self.speaker is not None:
            await self.speaker.close()
        self.service.channels.pop(self.token, None)
