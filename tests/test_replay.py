"""The replay Reasoner: recorded chunks at their recorded times, from a file the store exports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from convfill.clock import FakeClock
from convfill.config import EngineConfig
from convfill.engine import Engine
from convfill.errors import ConfigError
from convfill.events import ChunkArrived, ErrorEvent, PhraseEnded
from convfill.reasoners import ReasonerSpec, build_reasoner
from convfill.reasoners.replay import ReplayReasoner
from convfill.testing import ScriptedReasoner, ScriptedTalker, of_type, run_turn

ROOT = Path(__file__).resolve().parents[1]
RECORDED = [{"user": "Who wrote Pride and Prejudice?",
             "chunks": [{"t_ms": 800.0, "text": "Jane Austen wrote Pride and Prejudice."},
                        {"t_ms": 1350.0, "text": "It was published in 1813."}]},
            {"user": "And Emma?", "chunks": [{"t_ms": 400.0, "text": "Emma came out in 1815."}]}]


def _file(tmp_path, turns=RECORDED):
    p = tmp_path / "rec.jsonl"
    p.write_text("".join(json.dumps(t) + "\n" for t in turns))
    return p


async def test_chunks_arrive_at_their_recorded_times(tmp_path):
    clock = FakeClock()
    replay = ReplayReasoner(_file(tmp_path), clock=clock)
    events = await run_turn(Engine(ScriptedTalker(clock=clock), replay, EngineConfig(), clock=clock),
                            "who wrote  PRIDE and prejudice?")  # matched whatever the case and spacing
    chunks = of_type(events, ChunkArrived)
    assert [(c.t_ms, c.text) for c in chunks] == [(800.0, "Jane Austen wrote Pride and Prejudice."),
                                                  (1350.0, "It was published in 1813.")]
    fast = ReplayReasoner(_file(tmp_path), clock=clock, speed=2.0)
    events = await run_turn(Engine(ScriptedTalker(clock=clock), fast, EngineConfig(), clock=clock), "And Emma?")
    assert [c.t_ms for c in of_type(events, ChunkArrived)] == [200.0]


async def test_an_unrecorded_message_is_an_honest_error_and_in_order_mode_answers_anything(tmp_path):
    clock = FakeClock()
    events = await run_turn(Engine(ScriptedTalker(clock=clock), ReplayReasoner(_file(tmp_path), clock=clock),
                                   EngineConfig(), clock=clock), "Something never recorded")
    assert "no turn for this message" in of_type(events, ErrorEvent)[0].message
    assert of_type(events, PhraseEnded)[-1].source == "error"
    in_order = ReplayReasoner(_file(tmp_path), clock=clock, in_order=True)
    texts = []
    for question in ("anything", "anything else", "and a third"):
        events = await run_turn(Engine(ScriptedTalker(clock=clock), in_order, EngineConfig(), clock=clock), question)
        texts.append(of_type(events, ChunkArrived)[0].text)
    assert texts == ["Jane Austen wrote Pride and Prejudice.", "Emma came out in 1815.",
                     "Jane Austen wrote Pride and Prejudice."]


def test_bad_recordings_are_clear_errors(tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"user": "hi", "chunks": [{"text": "no time"}]}\n')
    with pytest.raises(ConfigError, match="bad.jsonl line 1: not a replay record"):
        ReplayReasoner(tmp_path / "bad.jsonl")
    with pytest.raises(ConfigError, match="needs a recording"):
        build_reasoner(ReasonerSpec(name="replay"))
    with pytest.raises(ConfigError, match="cannot read"):
        build_reasoner(ReasonerSpec(name="replay", model=str(tmp_path / "missing.jsonl")))


async def test_a_recorded_session_replays_as_it_happened(tmp_path):
    from labeling.export import export_replay
    from convfill.turnlog.recorder import TurnRecorder
    from labeling.store import LabelStore

    clock = FakeClock()
    store = LabelStore(tmp_path / "s.db")
    live = ScriptedReasoner(["Paris is the capital of France.", "It has two million people."], delays=[1.2, 0.4],
                            clock=clock)
    engine = Engine(ScriptedTalker(clock=clock), live, EngineConfig(), clock=clock, observers=[TurnRecorder(store)])
    recorded = of_type(await run_turn(engine, "What is the capital of France?"), ChunkArrived)
    stats = export_replay(store, tmp_path / "session.jsonl")
    assert stats.turns == 1 and stats.phrases == 2
    replayed = of_type(await run_turn(Engine(ScriptedTalker(clock=clock), ReplayReasoner(
        tmp_path / "session.jsonl", clock=clock), EngineConfig(), clock=clock), "What is the capital of France?"),
        ChunkArrived)
    assert [(c.t_ms, c.text) for c in replayed] == [(c.t_ms, c.text) for c in recorded]


def test_labeling_cli_exports_a_recording_the_turn_cli_replays(tmp_path):
    from labeling.store import LabelStore

    store = LabelStore(tmp_path / "s.db")
    (tmp_path / "c.jsonl").write_text(json.dumps({"conversation": [
        {"user": "Who wrote Hamlet?", "thoughts": ["<sil>", "William Shakespeare wrote Hamlet."],
         "response": ["Let me think.", "Shakespeare did."]}]}) + "\n")
    store.import_convfill(tmp_path / "c.jsonl")
    out = subprocess.run([sys.executable, "-m", "labeling", "export", "--db", str(tmp_path / "s.db"), "--format",
                          "replay", "--out", str(tmp_path / "rec.jsonl")], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    turn = subprocess.run([sys.executable, "-m", "convfill", "turn", "who wrote hamlet?", "--reasoner", "replay",
                           "--model", str(tmp_path / "rec.jsonl"), "--json"], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)
    assert turn.returncode == 0, turn.stderr
    chunks = [json.loads(line) for line in turn.stdout.splitlines() if '"chunk_arrived"' in line]
    assert [c["text"] for c in chunks] == ["William Shakespeare wrote Hamlet."]
