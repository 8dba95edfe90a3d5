"""Voice-mode turns on the fake clock: the real Engine, Playback and Speaker, a scripted Talker/Reasoner, a
fake TTS (60 ms of audio per character) and a simulated browser that schedules audio back to back and
reports it the way voice.js does. Both filler schedules run here, side by side."""

from __future__ import annotations

import pytest

from convfill.clock import FakeClock
from convfill.config import EngineConfig
from convfill.engine import Engine
from convfill.errors import ConfigError
from convfill.events import AudioHeard, PhraseEnded, SilInjected, TurnEnded, VoiceMetrics
from convfill.metrics import turn_metrics
from convfill.testing import ScriptedReasoner, ScriptedTalker, of_type, run_turn
from convfill.voice.playback import Playback, Utterance, cut_text
from convfill.voice.protocol import unpack_audio
from convfill.voice.speaker import Speaker
from convfill.voice.tts import Speech, split_sentences

MS_PER_CHAR = 60.0
RATE = 1000  # fake audio: 1 sample per ms keeps the arithmetic obvious


class Browser:
    """Plays what the speaker sends, back to back on the fake clock, and reports like voice.js."""

    def __init__(self, clock: FakeClock, playback: Playback):
        self.clock, self.playback = clock, playback
        self.last_end = 0.0
        self.playing: list[tuple[dict, float]] = []  # (header, start ms)
        self.messages: list[dict] = []

    async def send_audio(self, frame: bytes) -> None:
        header, pcm = unpack_audio(frame)
        now = self.clock.now_ms()
        start = max(now + 20.0, self.last_end)
        self.last_end = start + header["samples"] * 1000.0 / header["rate"]
        self.playing.append((header, start))
        self.playback.started(header["turn"], header["phrase"], header["seq"], start - now)

    async def send_json(self, msg: dict) -> None:
        self.messages.append(msg)

    def barge_in(self) -> None:
        """Stop what is playing now and report the cut, as voice.js does on speech onset."""
        now = self.clock.now_ms()
        for header, start in self.playing:
            end = start + header["samples"] * 1000.0 / header["rate"]
            if start <= now < end:
                self.playback.cut(header["turn"], header["phrase"], header["seq"], now - start)
                return
        self.playback.stop_all(self.playback.turn_id)


def voiced(chunks=("Jane Austen wrote Pride and Prejudice.",), delays=2.0, script=None, **cfg):
    clock = FakeClock()
    kw = {"script": script} if script else {}
    talker = ScriptedTalker(clock=clock, first_token_s=0.05, per_token_s=0.02, **kw)
    reasoner = ScriptedReasoner(list(chunks), delays, clock=clock)
    playback = Playback(clock)
    browser = Browser(clock, playback)

    async def synthesize(text: str) -> list[Speech]:
        await clock.sleep(0.05)
        return [Speech(s, b"\0\0" * int(len(s) * MS_PER_CHAR), RATE, 50.0) for s in split_sentences(text + " ")[0]]

    speaker = Speaker(synthesize, playback, browser.send_audio, browser.send_json)
    engine = Engine(talker, reasoner, EngineConfig(**cfg), clock=clock, observers=[speaker.on_event])
    engine.playback = playback
    return engine, browser, clock


def heard_spans(events):
    return [(h.start_ms, h.end_ms) for h in of_type(events, AudioHeard)]


def dead_air(events):
    return of_type(events, VoiceMetrics)[0].dead_air_ms


async def test_a_voiced_turn_ends_when_its_audio_has_been_heard():
    engine, browser, _ = voiced(delays=0.5)
    events = await run_turn(engine, "Who wrote Pride and Prejudice?")
    end = events[-1]
    assert isinstance(end, TurnEnded) and end.reason == "done"
    spans = heard_spans(events)
    assert spans and end.t_ms >= max(e for _, e in spans)
    generated = " ".join(e.text for e in of_type(events, PhraseEnded) if e.text)
    assert end.reply == generated  # nothing was cut: everything generated was heard
    assert engine.history[-1].reply == generated
    vm = of_type(events, VoiceMetrics)[0]
    assert vm.voiced_first_ms == spans[0][0] and vm.pacing == "audio"
    assert vm.tts_first_byte_ms and turn_metrics(events).voiced_first_ms == vm.voiced_first_ms
    assert {m["type"] for m in browser.messages} >= {"turn", "end"}


async def test_audio_pacing_fills_only_when_audio_runs_dry_and_leaves_no_dead_air():
    # A slow Reasoner (4 s) and short fillers: text pacing says a filler every d seconds of *generation*
    # idleness; audio pacing waits for the audio to run low, then keeps it going.
    def script(ctx):
        return "Hmm, let me think." if ctx.knowledge is None else ctx.knowledge

    runs = {}
    for pacing in ("text", "audio"):
        engine, _, _ = voiced(delays=4.0, script=script, filler_pacing=pacing, silence_s=0.3, max_fillers=20,
                              filler_lead_s=0.4)
        runs[pacing] = await run_turn(engine, "Who wrote Pride and Prejudice?")
    text_fillers = len(of_type(runs["text"], SilInjected))
    audio_fillers = len(of_type(runs["audio"], SilInjected))
    assert audio_fillers < text_fillers  # text pacing piles fillers up in the audio queue
    assert dead_air(runs["audio"]) == []
    # audio pacing: each filler after the first was requested when the audio queue was nearly empty
    spans = heard_spans(runs["audio"])
    starts = [s.t_ms for s in of_type(runs["audio"], SilInjected)][1:]
    for t in starts:
        ahead = max((e for _, e in spans if _ <= t), default=0.0) - t
        assert ahead <= 0.4 * 1000 + 1e-6


async def test_d_is_a_floor_for_audio_pacing():
    def script(ctx):
        return "Ok." if ctx.knowledge is None else ctx.knowledge  # 180 ms of audio per filler

    engine, _, _ = voiced(delays=5.0, script=script, filler_pacing="audio", silence_s=1.5, max_fillers=20,
                          filler_lead_s=0.5)
    events = await run_turn(engine, "Hi")
    fillers = of_type(events, SilInjected)
    ended = {e.phrase_index: e.t_ms for e in of_type(events, PhraseEnded)}
    for prev, nxt in zip(fillers, fillers[1:]):
        assert nxt.t_ms - ended[prev.phrase_index] >= 1500 - 1e-6


async def test_knowledge_preempts_while_filler_audio_plays():
    def script(ctx):
        return ("Let me look that up for you, it is a good question about books." if ctx.knowledge is None
                else ctx.knowledge)

    engine, _, _ = voiced(delays=0.5, script=script)
    events = await run_turn(engine, "Who wrote it?")
    chunk_phrase = next(e for e in of_type(events, PhraseEnded) if e.source == "chunk")
    first_heard_end = heard_spans(events)[0][1]
    assert chunk_phrase.t_ms < first_heard_end  # generated while the filler was still being heard


async def test_barge_in_keeps_only_what_was_heard():
    def script(ctx):
        return ("Let me check. I am looking at my notes now. This takes a moment." if ctx.knowledge is None
                else ctx.knowledge)

    engine, browser, clock = voiced(delays=10.0, script=script, max_fillers=1)
    engine.playback.utterance = Utterance("Tell me", asr_ms=300.0, audio_s=1.2, endpoint_ms=600.0,
                                          eos_to_transcript_ms=320.0)
    turn = engine.turn("Tell me")
    events = []
    async for ev in turn:
        events.append(ev)
        if isinstance(ev, AudioHeard):  # the first sentence was heard; the user speaks into the second
            await clock.sleep(0.4)
            browser.barge_in()
            await engine.cancel()
    end = events[-1]
    assert isinstance(end, TurnEnded) and end.reason == "cancelled"
    heard = of_type(events, AudioHeard)
    assert heard[0].text == "Let me check." and not heard[0].cut
    assert heard[-1].cut and heard[-1].end_ms - heard[-1].start_ms == pytest.approx(400, abs=1)
    assert end.reply.startswith("Let me check. I am") and "moment" not in end.reply
    assert end.reply == " ".join(h.text for h in heard if h.text)
    assert engine.history[-1].reply == end.reply  # the next prompt sees what was heard
    vm = of_type(events, VoiceMetrics)[0]
    assert vm.asr_ms == 300.0 and vm.endpoint_ms == 600.0 and vm.voice_to_voice_ms is not None
    assert any(m == {"type": "cancel", "turn": engine.playback.turn_id} for m in browser.messages)


async def test_text_mode_is_unchanged_without_playback():
    engine, _, _ = voiced(delays=0.5)
    engine.playback = None
    events = await run_turn(engine, "Who wrote it?")
    assert not of_type(events, AudioHeard) and not of_type(events, VoiceMetrics)
    assert turn_metrics(events).voiced_first_ms is None


def test_sentences_and_cuts():
    assert split_sentences("Hi there. How are") == (["Hi there."], "How are")
    assert split_sentences('He said "yes." Then') == (['He said "yes."'], "Then")
    assert cut_text("one two three four", 0.5) == "one two"
    assert cut_text("one two", 0.0) == "" and cut_text("one two", 2.0) == "one two"


def test_filler_pacing_is_checked():
    with pytest.raises(ConfigError, match="filler_pacing"):
        EngineConfig(filler_pacing="sometimes")


async def test_a_cut_while_only_audio_is_left_ends_the_turn_cancelled():
    # The Talker is done long before its audio is: barge-in then lands while the engine waits for the
    # listener, and must end the turn as cancelled (heard up to the cut), with or without an explicit cancel.
    engine, browser, clock = voiced(delays=0.1, max_fillers=1)
    events = []
    async for ev in engine.turn("Who wrote it?"):
        events.append(ev)
        if isinstance(ev, AudioHeard) and len(of_type(events, AudioHeard)) == 1:
            await clock.sleep(0.3)
            browser.barge_in()  # no engine.cancel(): the cut alone ends the turn
    end = events[-1]
    assert end.reason == "cancelled" and of_type(events, AudioHeard)[-1].cut
    generated = " ".join(e.text for e in of_type(events, PhraseEnded) if e.text)
    assert len(end.reply) < len(generated)
