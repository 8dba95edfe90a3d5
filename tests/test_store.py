"""The shared SQLite store with a real database file: schema, turn recording, threads, secrets, locks."""

import sqlite3

import pytest
import sqlite_utils

from convfill.clock import FakeClock
from convfill.config import EngineConfig
from convfill.engine import Engine
from convfill.testing import ScriptedReasoner, ScriptedTalker, in_threads, run_turn
from convfill.turnlog.schema import migrate
from convfill.turnlog.recorder import TurnRecorder
from labeling.store import LabelStore, StoreError


def test_schema_exact_columns(tmp_path):
    db = sqlite_utils.Database(tmp_path / "x.db")
    migrate(db)
    assert db["phrases"].columns_dict == {
        "id": int, "turn_id": str, "phrase_index": int, "source": str, "chunk_index": int, "text": str,
        "started_ms": float, "first_token_ms": float, "ended_ms": float, "n_tokens": int, "cancelled": int}
    assert db["chunks"].columns_dict == {"id": int, "turn_id": str, "chunk_index": int, "text": str,
                                         "t_ms": float}
    assert set(db["turns"].columns_dict) >= {"id", "conversation_id", "turn_index", "user", "reply",
                                             "talker_ttft_ms", "n_fillers", "end_reason"}
    assert migrate(db) == []  # idempotent


async def _engine_with_recorder(store, **talker_kw):
    clock = FakeClock()
    rec = TurnRecorder(store, talker={"model": "scripted"},
                       reasoner={"reasoner": "openai", "model": "m", "api_key": "sk-secret-123"})
    engine = Engine(ScriptedTalker(clock=clock), ScriptedReasoner(["Fact one.", "Fact two."], 0.4, clock=clock),
                    EngineConfig(), clock=clock, observers=[rec])
    return engine, rec


async def test_engine_turns_are_persisted_with_timings(tmp_path):
    store = LabelStore(tmp_path / "s.db")
    engine, rec = await _engine_with_recorder(store)
    await run_turn(engine, "first")
    await run_turn(engine, "second")
    turns = store.turns(rec.conversation_id)
    assert [t["turn_index"] for t in turns] == [0, 1] and turns[1]["user"] == "second"
    assert turns[0]["talker_ttft_ms"] == pytest.approx(50) and turns[0]["n_fillers"] >= 1
    phrases = store.phrases(turns[0]["id"])
    assert phrases[0]["source"] == "sil" and phrases[1]["source"] == "chunk" and phrases[1]["chunk_index"] == 0
    assert phrases[1]["first_token_ms"] > phrases[1]["started_ms"]
    assert [c["text"] for c in store.chunks(turns[0]["id"])] == ["Fact one.", "Fact two."]
    evs = store.turn_events(turns[0]["id"])
    assert evs[0].type == "turn_started" and evs[-1].type == "turn_ended"
    assert all(e.type != "phrase_delta" for e in evs)


async def test_api_keys_never_reach_the_database(tmp_path):
    store = LabelStore(tmp_path / "s.db")
    engine, _ = await _engine_with_recorder(store)
    await run_turn(engine, "hello")
    store.db.conn.commit()
    raw = (tmp_path / "s.db").read_bytes() + (tmp_path / "s.db-wal").read_bytes() \
        if (tmp_path / "s.db-wal").exists() else (tmp_path / "s.db").read_bytes()
    assert b"sk-secret-123" not in raw
    dump = "\n".join(store.db.iterdump())
    assert "sk-secret-123" not in dump and '"model": "m"' in dump


def test_concurrent_writers_from_threads_lose_nothing(tmp_path):
    store = LabelStore(tmp_path / "s.db")

    def worker(i):
        for _ in range(10):
            store.new_conversation(meta={"worker": i})

    assert in_threads(worker, 8) == []
    assert store.db["conversations"].count == 80


def test_locked_database_is_a_clear_error_and_writes_nothing(tmp_path):
    path = tmp_path / "s.db"
    store = LabelStore(path)
    blocker = sqlite3.connect(path)
    blocker.execute("begin exclusive")
    try:
        with pytest.raises(StoreError, match="locked"):
            LabelStore(path, busy_timeout_ms=200).new_conversation()
    finally:
        blocker.rollback()
        blocker.close()
    assert store.db["conversations"].count == 0
