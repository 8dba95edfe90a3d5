"""The voice channel's protocol handling with a scripted socket and counting fake models (fast, no audio
models): early transcription during the endpointing silence, its voiding on resumed speech, limits."""

from __future__ import annotations

import asyncio
import json

import pytest

from convfill.errors import ConvFillError
from convfill.voice.asr import Transcript
from convfill.voice.channel import VoiceLimits, VoiceService
from convfill.voice.protocol import parse_client_message


class CountingASR:
    sample_rate = 16000

    def __init__(self):
        self.calls: list[int] = []

    def transcribe(self, pcm: bytes) -> Transcript:
        self.calls.append(len(pcm))
        return Transcript(f"heard {len(pcm)} bytes", len(pcm) / 32000, 5.0, "en")


class ScriptedSocket:
    """Feeds ASGI messages to the channel and keeps what it sends."""

    def __init__(self):
        self.inbox: asyncio.Queue = asyncio.Queue()
        self.sent: list[dict] = []
        self.closed_with: int | None = None

    async def receive(self):
        return await self.inbox.get()

    async def send_text(self, text: str) -> None:
        self.sent.append(json.loads(text))

    async def send_bytes(self, data: bytes) -> None:
        self.sent.append({"type": "audio", "bytes": len(data)})

    async def close(self, code: int = 1000) -> None:
        self.closed_with = code

    def text(self, **msg):
        self.inbox.put_nowait({"type": "websocket.receive", "text": json.dumps(msg)})

    def audio(self, n: int):
        self.inbox.put_nowait({"type": "websocket.receive", "bytes": b"\1\0" * (n // 2)})

    def leave(self):
        self.inbox.put_nowait({"type": "websocket.disconnect"})


async def _transcripts(ws, n, timeout=5.0):
    async def wait():
        while sum(1 for m in ws.sent if m["type"] == "transcript") < n:
            await asyncio.sleep(0.005)
    await asyncio.wait_for(wait(), timeout)
    return [m for m in ws.sent if m["type"] == "transcript"]


async def _session(script, limits=None):
    asr = CountingASR()
    service = VoiceService(asr=asr, tts=object(), limits=limits)
    channel = service.open()
    ws = ScriptedSocket()
    server = asyncio.create_task(channel.serve(ws))
    await script(ws)
    ws.leave()
    await asyncio.wait_for(server, 5)
    return asr, ws, service


async def test_the_early_transcript_is_used_when_no_speech_follows():
    async def script(ws):
        ws.text(type="speech_start")
        ws.audio(32000)
        ws.text(type="speech_pause")
        ws.audio(6400)  # the endpointing silence keeps streaming
        await asyncio.sleep(0.05)
        ws.text(type="speech_end", endpoint_ms=600)
        await _transcripts(ws, 1)

    asr, ws, _ = await _session(script)
    assert asr.calls == [32000]  # one transcription, started at the pause
    assert [m["text"] for m in ws.sent if m["type"] == "transcript"] == ["heard 32000 bytes"]


class PrefillingSession:
    """A chat session that has had a turn: the channel prefills transcripts into it."""

    settings = object()

    def __init__(self):
        self.prefilled: list[str] = []

    async def prefill(self, text, settings):
        self.prefilled.append(text)
        return True

    async def cancel(self):
        pass


async def test_the_early_transcript_is_prefilled_before_the_endpoint_is_reached():
    service = VoiceService(asr=CountingASR(), tts=object())
    channel, session, ws = service.open(), PrefillingSession(), ScriptedSocket()
    assert channel.bind(session)
    server = asyncio.create_task(channel.serve(ws))
    ws.text(type="speech_start")
    ws.audio(32000)
    ws.text(type="speech_pause")
    for _ in range(200):  # the browser is still waiting out the endpointing silence
        if session.prefilled:
            break
        await asyncio.sleep(0.005)
    assert session.prefilled == ["heard 32000 bytes"]
    assert not [m for m in ws.sent if m["type"] == "transcript"]  # before the end of speech was decided
    ws.text(type="speech_end", endpoint_ms=600)
    await _transcripts(ws, 1)
    ws.leave()
    await asyncio.wait_for(server, 5)
    assert [m["text"] for m in ws.sent if m["type"] == "transcript"] == ["heard 32000 bytes"]


async def test_speech_after_a_pause_voids_the_early_transcript():
    async def script(ws):
        ws.text(type="speech_start")
        ws.audio(32000)
        ws.text(type="speech_pause")
        ws.text(type="speech_resume")
        ws.audio(16000)
        ws.text(type="speech_end", endpoint_ms=600)
        await _transcripts(ws, 1)

    asr, ws, _ = await _session(script)
    assert [m["text"] for m in ws.sent if m["type"] == "transcript"] == ["heard 48000 bytes"]  # all of it


async def test_audio_outside_an_utterance_is_dropped_and_aborts_forget():
    async def script(ws):
        ws.audio(32000)  # the mic before any speech: never kept
        ws.text(type="speech_start")
        ws.audio(3200)
        ws.text(type="speech_abort")
        ws.text(type="speech_end", endpoint_ms=600)  # nothing open: nothing transcribed
        ws.text(type="speech_start")
        ws.audio(3200)
        ws.text(type="speech_end", endpoint_ms=0)
        await _transcripts(ws, 1)

    asr, ws, _ = await _session(script)
    assert asr.calls == [3200]


async def test_the_channel_limit_and_tokens():
    service = VoiceService(asr=CountingASR(), tts=object(), limits=VoiceLimits(max_channels=2))
    a, b = service.open(), service.open()
    assert a.token != b.token and len(a.token) >= 32
    with pytest.raises(ConvFillError, match="Voice is busy"):
        service.open()
    assert service.get(a.token) is a and service.get("x" * 500) is None and service.get(None) is None


@pytest.mark.parametrize("bad", ['{"type": "nope"}', '[1, 2]', '{"type": "cut", "phrase": "1"}',
                                 '{"type": "started", "start_in_ms": -1}', '{"type": "cut", "turn": 5}',
                                 '{"type": "first_audio", "eos_to_first_audio_ms": 1e12}', "x" * 3000])
def test_malformed_client_messages_are_refused(bad):
    with pytest.raises(ValueError):
        parse_client_message(bad)
