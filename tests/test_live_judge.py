"""Live judging: a chat turn's phrases are judged in the background once the turn is stored, and the
timeline shows each phrase's E/N/C badge. The shipped offline judge, real SQLite, the app's own API."""

from __future__ import annotations

import pytest
from test_app import TURN, _client, app  # noqa: F401 - `app` is a fixture

from convfill.ui.timeline import render_timeline

pytestmark = pytest.mark.model


def test_the_timeline_gets_badges_once_the_judge_has_spoken(app):
    demo, url = app
    job = _client(url).submit(message="Who wrote Pride and Prejudice?", **TURN)
    job.result(timeout=300)
    updates = job.outputs()
    final_timeline = updates[-1][1]
    assert 'class="cf-badge"' in final_timeline  # the last update carries the judge's labels
    assert not any('class="cf-badge"' in u[1] for u in updates[:-2])  # not before the turn was stored
    store = demo.convfill_store
    (turn_id,) = store.db.execute("select id from turns").fetchone()
    rows = store.db.execute("select p.phrase_index, p.source, s.label, s.model_id from phrases p join suggestions s "
                            "on s.phrase_id = p.id where p.turn_id = ? order by p.phrase_index", [turn_id]).fetchall()
    phrases = store.phrases(turn_id)
    assert len(rows) == len([p for p in phrases if p["source"] != "error"]) >= 3  # every phrase, once
    assert {r[3] for r in rows} == {rows[0][3]} and rows[0][3].startswith("convfill/minilm-nli-offline@")
    for index, _, label, _ in rows:
        assert f'data-label="{label}"' in final_timeline
    knowledge = [r for r in rows if r[1] == "chunk"]
    said = [(p["source"], p["text"]) for p in phrases]
    # "Jane Austen wrote it." and co.: entailed, never contradicted. Not every one is labelled entailment: after
    # the filler "Let me see who wrote it." the paper's premise (chunk + earlier phrases) leaves the offline
    # judge at neutral for "Jane Austen wrote it." (the BF16 Talker's turn; the Q8_0 one said "A book, hmm.").
    assert any(r[2] == "entailment" for r in knowledge), said
    assert not any(r[2] == "contradiction" for r in knowledge), said


def test_badges_are_drawn_over_their_phrases():
    from convfill.events import FirstToken, PhraseEnded, PhraseStarted, TurnStarted

    events = [TurnStarted(0.0, "t", "hi", 0.0), PhraseStarted(1.0, 0, "sil", None), FirstToken(2.0, 0),
              PhraseEnded(5.0, 0, "Let me see.", "sil", None, 3, False),
              PhraseStarted(6.0, 1, "sil", None), FirstToken(7.0, 1), PhraseEnded(9.0, 1, "Hmm.", "sil", None, 2, False)]
    svg = render_timeline(events, labels={0: "neutral", 1: "contradiction", 7: "entailment"})
    assert svg.count('class="cf-badge"') == 2
    assert 'data-label="neutral"' in svg and 'data-label="contradiction"' in svg and ">C<" in svg
    assert 'class="cf-badge"' not in render_timeline(events)


def test_the_judge_is_loaded_when_the_app_starts_not_at_the_first_turn(tmp_path):
    """The first turn's badges wait for the judge a few seconds at most; loading one took 7.2 s on a slow CPU."""
    import threading

    from labeling.live import LiveJudge, shared_judge
    from labeling.store import LabelStore

    started = threading.Event()

    def loader():
        started.set()
        return None, "no judge here"

    live = LiveJudge(LabelStore(tmp_path / "a.db"), judge_loader=loader)
    assert started.wait(10), "the worker did not load its judge before any turn was submitted"
    assert live.load() == (None, "no judge here")
    assert shared_judge() is shared_judge()  # one judge per process, however many apps are built
