"""Bounded cost per visitor, through the app's own API: message tokens, knowledge size, turn settings, the
server-wide cap on talking turns, and a bounded model cache where every spelling of a path is one model."""

from __future__ import annotations

import os
import time

import pytest
from gradio_client.exceptions import AppError
from test_app import _client, launched

from convfill.policy import Limits, Policy
from convfill.testing import ScriptedTalker
from convfill.ui.session import DEFAULT_TALKER, ModelPool

LIMITS = Limits(max_user_tokens=12, max_knowledge_chars=200, max_turn_s=60, max_phrases=10, max_phrase_tokens=32,
                max_fillers=5, max_active_turns=1, max_models=2)
FAST = dict(reasoner="oracle", knowledge="Cats purr.", reasoner_delay_s=0.05, turn_timeout_s=60, api_name="/chat")


@pytest.fixture
def limited_app():
    from convfill.ui import AppConfig

    pool = ModelPool()
    pool.add_talker(DEFAULT_TALKER, ScriptedTalker(first_token_s=0.01, per_token_s=0.01))
    with launched(AppConfig(policy=Policy(public=True, limits=LIMITS)), pool) as demo_url:
        yield demo_url


def test_each_limit_is_a_clear_error(limited_app):
    _, url = limited_app
    c = _client(url)
    c.predict(message="Tell me about cats", **FAST)  # within every limit
    with pytest.raises(AppError, match=r"Message is \d+ tokens long; this server takes up to 12"):
        c.predict(message="cats " * 200, **FAST)
    with pytest.raises(AppError, match="Oracle knowledge is 1,000 characters; this server takes up to 200"):
        c.predict(message="cats?", **{**FAST, "knowledge": "x" * 1000})
    # the engine controls stop at the caps (Gradio refuses larger values), and the session checks again
    with pytest.raises(AppError, match="greater than maximum value 60"):
        c.predict(message="cats?", **{**FAST, "turn_timeout_s": 3600})
    with pytest.raises(AppError, match="greater than maximum value 10"):
        c.predict(message="cats?", max_phrases=200, **FAST)


def test_the_session_enforces_the_caps_behind_the_controls():
    from convfill.config import EngineConfig
    from convfill.policy import PolicyError

    LIMITS.check_engine(EngineConfig(turn_timeout_s=60, max_phrases=10, max_phrase_tokens=32))
    with pytest.raises(PolicyError, match="max_phrase_tokens up to 32; you asked for 48"):
        LIMITS.check_engine(EngineConfig(turn_timeout_s=60, max_phrases=10, max_phrase_tokens=48))
    assert Limits.from_env(public=True).max_active_turns == 4 and Limits.from_env(public=False).max_active_turns is None


def test_a_busy_server_says_so_and_a_visitor_can_still_barge_in_on_their_own_turn(limited_app):
    demo, url = limited_app
    a, b = _client(url), _client(url)
    slow = {**FAST, "reasoner_delay_s": 10, "silence_s": 0.3}
    long_turn = a.submit(message="Tell me everything about cats", **slow)
    deadline = time.monotonic() + 20
    while not long_turn.outputs() and time.monotonic() < deadline:  # A is talking
        time.sleep(0.05)
    with pytest.raises(AppError, match="The server is busy: 1 conversations are talking"):
        b.predict(message="Hello?", **FAST)
    a.predict(message="Actually, just the short version.", **FAST)  # A's barge-in is not refused
    long_turn.result(timeout=30)
    b.predict(message="Hello?", **FAST)  # now B's turn runs
    reasons = sorted(r[0] for r in demo.convfill_store.db.execute("select end_reason from turns"))
    assert reasons == ["cancelled", "done", "done"]


def test_every_spelling_of_a_model_file_is_one_model_and_the_cache_is_bounded(tmp_path, monkeypatch):
    import convfill.talkers as talkers

    loads = []
    monkeypatch.setattr(talkers.registry, "get_talker", lambda runtime, model=None, **kw: loads.append(model) or
                        ScriptedTalker())
    a, b = tmp_path / "a.gguf", tmp_path / "b.gguf"
    a.write_bytes(b"GGUF")
    b.write_bytes(b"GGUF")
    os.symlink(a, tmp_path / "link.gguf")
    pool = ModelPool(max_talkers=2)
    first = pool.talker(str(a))
    for spelling in (f"{tmp_path}/./a.gguf", f"{tmp_path}//a.gguf", str(tmp_path / "link.gguf"),
                     f"{tmp_path}/x/../a.gguf"):
        (tmp_path / "x").mkdir(exist_ok=True)
        assert pool.talker(spelling) is first
    assert loads == [str(a.resolve())]
    pool.talker(str(b))
    pool.talker(DEFAULT_TALKER)  # a third model: the least recently used (a) is dropped
    assert pool.loaded_talker(str(a)) is None and pool.loaded_talker(str(b)) is not None
    assert len(loads) == 3


@pytest.mark.model
def test_the_load_benchmark_runs_every_turn_through_the_app(monkeypatch, tmp_path):
    from convfill.eval.load import render, run_load

    result = run_load(sessions=(1, 2), rounds=1, delay_s=0.2)
    assert [r["sessions"] for r in result["rows"]] == [1, 2]
    assert [(r["turns"], r["done"]) for r in result["rows"]] == [(1, 1), (2, 2)]
    assert all(r["ttft_ms_p50"] is not None and not r["errors"] for r in result["rows"])
    assert "| 2 | 2/2 |" in render(result)


@pytest.mark.model
def test_the_load_benchmark_can_keep_each_visitors_conversation_and_stores_every_turn():
    import sqlite3

    from convfill.eval.load import QUESTIONS, run_load

    result = run_load(sessions=(2,), rounds=2, delay_s=0.1, conversations=True)
    assert [(r["turns"], r["done"]) for r in result["rows"]] == [(4, 4)]
    with sqlite3.connect(result["db"]) as db:
        rows = db.execute("SELECT conversation_id, user FROM turns ORDER BY conversation_id, turn_index").fetchall()
    by_visitor: dict[str, list[str]] = {}
    for conversation, user in rows:
        by_visitor.setdefault(conversation, []).append(user)
    # two visitors, each one conversation of two turns, the second its next question
    expected = [[QUESTIONS[0][0], QUESTIONS[1][0]], [QUESTIONS[1][0], QUESTIONS[2][0]]]
    assert sorted(by_visitor.values()) == sorted(expected)


def test_loading_a_new_model_never_stalls_sessions_on_loaded_ones(tmp_path, monkeypatch):
    import threading

    import convfill.talkers as talkers

    release, loads = threading.Event(), []

    def slow(runtime, model=None, **kw):
        loads.append(model)
        release.wait(10)  # a model that takes long to load
        return ScriptedTalker()

    pool = ModelPool()
    fast = ScriptedTalker()
    pool.add_talker(DEFAULT_TALKER, fast)
    monkeypatch.setattr(talkers.registry, "get_talker", slow)
    (tmp_path / "b.gguf").write_bytes(b"GGUF")
    got = []
    loaders = [threading.Thread(target=lambda: got.append(pool.talker(str(tmp_path / "b.gguf")))) for _ in range(2)]
    for t in loaders:
        t.start()
    time.sleep(0.2)
    t0 = time.monotonic()
    assert pool.talker(DEFAULT_TALKER) is fast and time.monotonic() - t0 < 0.1  # not behind the load
    release.set()
    for t in loaders:
        t.join(10)
    assert len(loads) == 1 and got[0] is got[1]  # two sessions asking for the new model: one load
