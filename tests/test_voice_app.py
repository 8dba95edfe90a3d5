"""Voice through the app's own server: the real Talker, Whisper base and Piper, the `voice_start` server
function, the voice socket and the `/chat` API, driven by `convfill.voice.client` (the browser's side of the
protocol in Python). The browser itself is tested in test_voice_browser.py."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from convfill.ui import AppConfig
from convfill.ui.session import DEFAULT_TALKER, ModelPool
from convfill.voice.client import VoiceClient, spoken, voice_start
from tests.test_app import launched

pytestmark = pytest.mark.model

KNOWLEDGE = "The capital of France is Paris. Paris has about two million people."
TURN = dict(reasoner="oracle", knowledge=KNOWLEDGE, reasoner_delay_s=0.5, oracle_gap_s=0.3, max_phrase_tokens=24,
            turn_timeout_s=300, api_name="/chat")


@pytest.fixture(scope="module")
def voice_parts():
    """(ASR, TTS) the app uses, and a steady Piper (no randomness) that speaks the test's questions the same
    way every run."""
    from convfill.voice import load_asr, load_tts
    from convfill.voice.tts import PiperTTS

    return load_asr(), load_tts(), PiperTTS(noise_scale=0.0, noise_w_scale=0.0)


@pytest.fixture
def voice_app(real_talker, voice_parts):
    from convfill.voice.channel import VoiceService

    pool = ModelPool()
    pool.add_talker(DEFAULT_TALKER, real_talker)
    with launched(AppConfig.from_env(live_judge=False), pool) as (demo, url):
        demo.convfill_voice._asr, demo.convfill_voice._tts = voice_parts[:2]  # loaded once for the module
        yield demo, url
    assert isinstance(demo.convfill_voice, VoiceService)


def chat(url: str, message: str, token: str, **kw):
    from gradio_client import Client

    return Client(url, verbose=False, download_files=False).predict(message=message, voice_token=token,
                                                                      **{**TURN, **kw})


async def _ask(url, pcm, **kw):
    async with VoiceClient(url) as vc:
        turn = await vc.say(pcm)
        chat_job = asyncio.create_task(asyncio.to_thread(chat, url, turn.transcript, vc.token, **kw))
        heard = await vc.heard()
        out = await chat_job
        return vc, heard, out


def test_a_spoken_question_is_transcribed_answered_and_heard(voice_app, voice_parts):
    demo, url = voice_app
    vc, turn, out = asyncio.run(_ask(url, spoken(voice_parts[2], "What is the capital of France?")))
    words = turn.transcript.lower().replace("?", "").split()
    assert "capital" in words and "france" in words
    assert turn.played and sum(p.duration_s for p in turn.played) > 1.0  # real speech came back
    assert turn.end_reason == "done" and turn.eos_to_first_audio_ms is not None
    store = demo.convfill_store
    row = next(r for r in store.db["turns"].rows if r["id"] == turn.turn)
    assert row["end_reason"] == "done" and row["asr_ms"] > 0 and row["voiced_first_ms"] > 0
    assert row["voice_to_voice_ms"] == pytest.approx(turn.eos_to_first_audio_ms, abs=1)
    heard = [json.loads(e["data"]) for e in store.db["events"].rows_where("turn_id = ? and type = 'audio_heard'",
                                                                             [turn.turn])]
    assert [h["text"] for h in heard] == [p.text for p in turn.played]
    assert row["reply"] == " ".join(h["text"] for h in heard)  # the reply on record is what was heard
    # the page's timeline got a Heard lane
    assert 'data-lane="heard"' in out[1]


def test_barge_in_by_voice_cancels_and_keeps_what_was_heard(voice_app, voice_parts):
    demo, url = voice_app
    tts = voice_parts[2]

    async def run():
        async with VoiceClient(url) as vc:
            first = await vc.say(spoken(tts, "Tell me about Paris."))
            job = asyncio.create_task(asyncio.to_thread(chat, url, first.transcript, vc.token,
                                                        reasoner_delay_s=3.0, max_fillers=6, silence_s=0.5))
            while not first.played or time.perf_counter() < first.played[0].start + 0.5:
                await asyncio.sleep(0.02)  # half a second into the reply
            second = await vc.say(spoken(tts, "Wait, what about Spain?"), barge_in=True)
            await job
            return first, second

    first, second = asyncio.run(run())
    assert "spain" in second.transcript.lower()
    row = next(r for r in demo.convfill_store.db["turns"].rows if r["id"] == first.turn)
    assert row["end_reason"] == "cancelled"
    generated = " ".join(p["text"] for p in demo.convfill_store.phrases(first.turn))
    assert row["reply"] and len(row["reply"]) < len(generated)
    cut = [p for p in first.played if p.cut_after_s is not None and p.cut_after_s > 0]
    assert cut and row["reply"].split()[-1] in cut[0].text  # the record ends inside the cut sentence


def test_the_socket_refuses_strangers(voice_app):
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    demo, url = voice_app
    ws_url = url.rstrip("/").replace("http", "ws", 1) + "/convfill/voice"
    token = voice_start(url)["token"]

    async def refused(uri, origin):
        try:
            async with connect(uri, origin=origin):
                return False
        except InvalidStatus as e:
            return e.response.status_code == 403

    base = url.rstrip("/")
    assert asyncio.run(refused(f"{ws_url}?token=guess", base))
    assert asyncio.run(refused(f"{ws_url}?token={token}", "https://evil.example"))  # another site's page

    async def twice():
        async with VoiceClient(url, token=token):
            return await refused(f"{ws_url}?token={token}", base)  # one socket per token
    assert asyncio.run(twice())


def test_hostile_messages_and_oversize_speech_are_refused_cleanly(voice_app, voice_parts):
    demo, url = voice_app

    async def run():
        async with VoiceClient(url) as vc:
            await vc.send({"type": "started", "turn": "x" * 5000})
            await vc.ws.send("not json")
            await vc.send({"type": "cut", "turn": "t", "phrase": -5, "seq": 0, "played_ms": 1})
            await vc.send({"type": "speech_start"})
            limit = int(demo.convfill_voice.limits.max_utterance_s * 16000) * 2
            for _ in range(limit // 64000 + 2):
                await vc.ws.send(b"\0" * 64000)
            await vc.send({"type": "speech_end", "endpoint_ms": 0})
            msg = await asyncio.wait_for(vc._transcripts.get(), 30)
            errors = [m for m in vc.messages if m["type"] == "error"]
            ok = await vc.say(spoken(voice_parts[2], "Hello there."))  # the channel still works
            return msg, errors, ok

    msg, errors, ok = asyncio.run(run())
    assert msg["text"] == "" and "longer than" in msg["reason"]
    assert len(errors) == 3 and all("malformed" in e["message"] for e in errors)
    assert "hello" in ok.transcript.lower()


def test_a_session_cannot_speak_through_another_visitors_channel(voice_app):
    from convfill.ui.session import ChatSession

    demo, url = voice_app
    service = demo.convfill_voice
    channel = service.open()
    channel.connected = True
    mine, theirs = ChatSession(ModelPool(), voice=service), ChatSession(ModelPool(), voice=service)
    assert mine._voice_channel(channel.token) is channel
    assert theirs._voice_channel(channel.token) is None
    assert mine._voice_channel("not-a-token") is None


def test_the_speech_models_a_visitor_names_are_checked(voice_app, tmp_path):
    demo, url = voice_app
    missing = voice_start(url, {"asr": str(tmp_path / "no-such-whisper")})
    assert "not found" in missing["error"]
    not_whisper = voice_start(url, {"asr": str(tmp_path)})
    assert "no model.bin" in not_whisper["error"]
    no_voice = voice_start(url, {"tts": str(tmp_path / "voice.onnx")})
    assert "error" in no_voice and "token" not in no_voice
    assert "token" in voice_start(url, {"asr": 5, "tts": None})  # non-text options count as blank


def test_a_public_server_loads_only_its_own_speech_models(tmp_path):
    from convfill.policy import Policy

    with launched(AppConfig(db=str(tmp_path / "public.db"), policy=Policy(public=True), live_judge=False)) as (_, url):
        answer = voice_start(url, {"asr": "/etc"})
        assert "only loads" in answer["error"]
        assert "too long" in voice_start(url, {"tts": "x" * 400})["error"]
