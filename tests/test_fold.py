"""One fold of a turn's events (`convfill.fold.TurnFold`) serves metrics, timeline, the UI view, the turn log
and evaluation: one real engine turn (scripted parts on the fake clock) read by each gives the same phrases."""

from __future__ import annotations

import re

import pytest

from convfill.clock import FakeClock
from convfill.engine import Engine
from convfill.config import EngineConfig
from convfill.eval.entail import phrase_pairs
from convfill.eval.naturalness import turn_from_events
from convfill.events import ChunkArrived, FirstToken, PhraseDelta, PhraseEnded, PhraseStarted, TurnEnded, TurnStarted
from convfill.fold import TurnFold, persisted
from convfill.metrics import turn_metrics
from convfill.nli import premise_for
from convfill.testing import ScriptedReasoner, ScriptedTalker, run_turn
from convfill.turnlog import TurnLog, TurnRecorder
from convfill.ui.timeline import render_timeline
from convfill.ui.view import TurnView


@pytest.fixture
async def events():
    """A real engine turn: fillers while the Reasoner is slow, then one phrase per knowledge chunk."""
    clock = FakeClock()
    engine = Engine(ScriptedTalker(clock=clock),
                    ScriptedReasoner(["Paris is the capital.", "It lies on the Seine."], delays=[1.2, 0.4], clock=clock),
                    EngineConfig(silence_s=0.3), clock=clock)
    return await run_turn(engine, "What is the capital of France?")


def test_the_fold_holds_each_phrase_with_its_times_and_chunk(events):
    fold = TurnFold.of(events)
    ended = [e for e in events if isinstance(e, PhraseEnded)]
    assert [p.index for p in fold.ended_phrases()] == [e.phrase_index for e in ended] and len(ended) >= 3
    for p, e in zip(fold.ended_phrases(), ended):
        started = next(s for s in events if isinstance(s, PhraseStarted) and s.phrase_index == p.index)
        first = next(f for f in events if isinstance(f, FirstToken) and f.phrase_index == p.index)
        assert (p.text, p.source, p.chunk_index, p.ended_ms) == (e.text, e.source, e.chunk_index, e.t_ms)
        assert (p.started_ms, p.first_token_ms) == (started.t_ms, first.t_ms)
    knowledge = [p for p in fold.ordered() if p.source == "chunk"]
    assert [fold.chunk_text(p) for p in knowledge] == ["Paris is the capital.", "It lies on the Seine."]
    assert fold.end is not None and fold.end.reason == "done" and fold.user == "What is the capital of France?"


def test_event_by_event_is_the_same_as_all_at_once(events):
    live = TurnFold()
    for ev in events:
        live.apply(ev)
    assert live == TurnFold.of(events)
    # a stored log has no deltas: the fold of it says the same
    assert TurnFold.of(persisted(events)).ended_phrases() == live.ended_phrases()
    assert not any(isinstance(e, PhraseDelta) for e in persisted(events))
    assert len(persisted(events)) == sum(not isinstance(e, PhraseDelta) for e in events)


def test_every_reader_sees_the_same_turn(events, tmp_path):
    fold = TurnFold.of(events)
    said = [p.text for p in fold.ended_phrases()]
    # metrics
    m = turn_metrics(events)
    assert m == turn_metrics(fold)
    assert m.n_fillers + m.n_knowledge_phrases == len(said) and m.talker_ttft_ms == fold.phrases[0].first_token_ms
    # the Chat tab's view and timeline
    view = TurnView("What is the capital of France?")
    for ev in events:
        view.apply(ev)
    assert view.talker_text == " ".join(t.strip() for t in said)
    svg = render_timeline(events)
    assert svg == render_timeline(view.fold)
    assert sorted(map(int, re.findall(r'class="cf-phrase" data-phrase="(\d+)"', svg))) == sorted(fold.phrases)
    # the turn log
    log = TurnLog(tmp_path / "t.db")
    tid = log.record_turn(log.new_conversation(), events)
    rows = log.phrases(tid)
    assert [r["text"] for r in rows] == said
    assert [(r["started_ms"], r["first_token_ms"]) for r in rows] == [
        (p.started_ms, p.first_token_ms) for p in fold.ended_phrases()]
    assert TurnFold.of(log.turn_events(tid)).ended_phrases() == fold.ended_phrases()
    # evaluation: NLI pairs and the spoken turn
    pairs = phrase_pairs(events)
    assert [p.hypothesis for p in pairs] == [t.strip() for t in said]
    earlier = said[:1]
    assert pairs[1].premise == premise_for(said[1], user=fold.user, knowledge=fold.chunk_text(fold.phrases[1]),
                                           earlier=earlier).premise
    assert [t for _, t, _ in turn_from_events(events).phrases] == [t.strip() for t in said]


def test_a_phrase_end_without_its_start_still_says_what_was_said():
    """Logs written before PhraseStarted was stored have only the end: the phrase still counts."""
    events = [TurnStarted(0.0, turn_id="t", user="hi"), ChunkArrived(10.0, chunk_index=0, text="A fact."),
              PhraseEnded(50.0, phrase_index=0, text="So, a fact.", source="chunk", chunk_index=0, n_tokens=4),
              TurnEnded(60.0, reason="done", reply="So, a fact.")]
    fold = TurnFold.of(events)
    assert [(p.text, p.started_ms, p.first_token_ms) for p in fold.ended_phrases()] == [("So, a fact.", None, None)]
    m = turn_metrics(fold)
    assert m.n_knowledge_phrases == 1 and m.chunk_to_phrase_lag_ms is None  # no start: no lag is invented
    assert 'class="cf-phrase"' not in render_timeline(fold)  # and no bar is drawn from a made-up start


async def test_an_empty_phrase_keeps_its_own_index_and_every_reader_counts_it(tmp_path):
    """A phrase that cleans to nothing is not said, but it was generated: it keeps its index (the next phrase
    used to reuse it, so the fold and the store's unique index each kept a different one) and counts."""
    clock = FakeClock()
    calls = []

    def script(ctx):
        calls.append(ctx)
        return "" if len(calls) == 1 else "Well, let me see." if ctx.knowledge is None else f"So, {ctx.knowledge}"

    engine = Engine(ScriptedTalker(script, clock=clock), ScriptedReasoner(["A fact."], delays=[1.0], clock=clock),
                    EngineConfig(silence_s=0.3), clock=clock)
    events = await run_turn(engine, "Tell me something.")
    started = [e.phrase_index for e in events if isinstance(e, PhraseStarted)]
    assert started == list(range(len(started))) and len(started) >= 3
    fold = TurnFold.of(events)
    assert fold.phrases[0].text == "" and fold.phrases[1].text == "Well, let me see."
    assert turn_metrics(fold).n_fillers == sum(1 for e in events if isinstance(e, PhraseEnded) and e.source == "sil")
    assert calls[1].earlier == ()  # the empty phrase is no context for the next one
    log = TurnLog(tmp_path / "t.db")
    tid = log.record_turn(log.new_conversation(), events)
    live = TurnLog(tmp_path / "live.db")
    recorder = TurnRecorder(live)
    for ev in events:
        recorder(ev)
    live_rows = [(r["phrase_index"], r["text"]) for r in live.phrases(live.turns(recorder.conversation_id)[0]["id"])]
    assert [(r["phrase_index"], r["text"]) for r in log.phrases(tid)] == live_rows
    assert (1, "Well, let me see.") in live_rows
