"""Nothing lost, nothing blocked: chat turns reach SQLite through one writer thread, as they happen.

Real SQLite files throughout: another connection holding the write lock, a process killed with SIGKILL in
the middle of a turn, and a connection that may not write (SQLite's own read-only error).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from convfill.testing import ScriptedTalker
from convfill.ui.session import DEFAULT_TALKER, ChatSession, ModelPool, TurnSettings
from convfill.turnlog.recorder import StoreWriter
from labeling.store import LabelStore

ROOT = Path(__file__).resolve().parents[1]
LOCK_S = 15.0  # the case: another writer holds the database for 15 s


def _sessions(store, writer, n=2):
    pool = ModelPool()
    pool.add_talker(DEFAULT_TALKER, ScriptedTalker(first_token_s=0.01, per_token_s=0.005))
    return [ChatSession(pool, store, writer=writer) for _ in range(n)]


async def _chat(session, text):
    await session.prepare(TurnSettings(knowledge="Cats purr. They sleep a lot.", reasoner_delay_s=0.05,
                                       oracle_gap_s=0.05, engine={"silence_s": 5.0}))
    t0 = time.monotonic()
    events = [ev async for ev in session.run(text)]
    return time.monotonic() - t0, events


async def test_a_locked_database_stalls_no_stream_and_the_turns_are_written_after(tmp_path):
    store = LabelStore(tmp_path / "s.db", busy_timeout_ms=200)
    writer = StoreWriter(store)
    a, b = _sessions(store, writer)
    other = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
    other.execute("begin exclusive")  # another process writes for a long time
    gaps, stop = [], asyncio.Event()

    async def heartbeat():  # how long the event loop went without running us
        last = time.monotonic()
        while not stop.is_set():
            await asyncio.sleep(0.02)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    beat = asyncio.ensure_future(heartbeat())
    locked_at = time.monotonic()
    try:
        (ta, ea), (tb, eb) = await asyncio.gather(_chat(a, "Tell me about cats"), _chat(b, "And dogs?"))
        assert ea[-1].reason == eb[-1].reason == "done" and ta < 5 and tb < 5  # both streamed at full speed
        assert "busy" in await a.saved(timeout_s=0.2)  # said honestly, not "lost"
        assert store.db.execute("select count(*) from turns").fetchone()[0] == 0  # nothing could be written yet
        await asyncio.sleep(max(0.0, LOCK_S - (time.monotonic() - locked_at)))
    finally:
        other.execute("rollback")
        other.close()
        stop.set()
        await beat
    assert max(gaps) < 0.5, f"the event loop stalled for {max(gaps):.2f} s"
    assert await asyncio.to_thread(writer.wait, None, 30)
    for s in (a, b):
        (turn,) = store.turns(s.conversation_id)
        assert turn["end_reason"] == "done" and turn["talker_ttft_ms"] is not None
        assert [p["text"] for p in store.phrases(turn["id"])] == [
            " ".join(p.text.split()) for p in s.turns[-1].fold.ordered()]
        assert len(store.chunks(turn["id"])) == 2
    assert await a.saved() is None
    writer.close()


async def test_a_read_only_database_keeps_chat_working_and_says_not_saved(tmp_path):
    store = LabelStore(tmp_path / "ro.db")
    writer = StoreWriter(store)
    # The writer thread's own connection refuses writes: SQLite's genuine "readonly database" error, as for
    # a file on a read-only mount (file modes alone do not stop root, who runs CI).
    writer.submit(lambda: store.db.execute("pragma query_only = 1"))
    (s,) = _sessions(store, writer, n=1)
    _, events = await _chat(s, "Tell me about cats")
    assert events[-1].reason == "done" and s.turns[-1].talker_text  # the chat went on
    notice = await s.saved()
    assert notice.startswith("This turn was not saved") and "readonly" in notice
    _, events = await _chat(s, "And dogs?")  # and goes on
    assert events[-1].reason == "done"
    writer.close()


_KILLED_CHILD = textwrap.dedent("""
    import asyncio, sys
    from convfill.testing import ScriptedTalker
    from convfill.ui.session import DEFAULT_TALKER, ChatSession, ModelPool, TurnSettings
    from convfill.turnlog.recorder import StoreWriter
    from labeling.store import LabelStore

    store = LabelStore(sys.argv[1])
    pool = ModelPool()
    pool.add_talker(DEFAULT_TALKER, ScriptedTalker(first_token_s=0.01, per_token_s=0.02))
    s = ChatSession(pool, store, writer=StoreWriter(store))

    async def main():
        # a Reasoner that takes a minute: the Talker keeps saying fillers until it is killed
        await s.prepare(TurnSettings(knowledge="Cats purr.", reasoner_delay_s=60,
                                     engine={"silence_s": 0.1, "max_fillers": 20}))
        async for ev in s.run("Tell me about cats"):
            if ev.type == "phrase_ended":
                print("phrase", ev.phrase_index, flush=True)

    asyncio.run(main())
""")


def test_kill_9_mid_turn_loses_at_most_the_phrase_being_said(tmp_path):
    db = tmp_path / "k.db"
    child = subprocess.Popen([sys.executable, "-c", _KILLED_CHILD, str(db)], stdout=subprocess.PIPE, text=True,
                             cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        said = []
        while len(said) < 3:
            line = child.stdout.readline()
            assert line, "the child ended before saying three phrases"
            said.append(int(line.split()[1]))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the third phrase reaches the file a moment after it is said
            with sqlite3.connect(db) as c:
                if c.execute("select count(*) from phrases").fetchone()[0] >= 3:
                    break
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
    store = LabelStore(db)
    (conv,) = store.db.execute("select id from conversations").fetchall()
    (turn,) = store.turns(conv[0])
    assert turn["end_reason"] == "incomplete" and turn["user"] == "Tell me about cats"
    assert len(store.phrases(turn["id"])) >= 3 and all(p["text"] for p in store.phrases(turn["id"]))
