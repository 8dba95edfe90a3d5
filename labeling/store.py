"""The one SQLite store behind both app tabs: chat turns are written here, the labeling tab reads them.

`LabelStore` takes a path (or a `sqlite_utils.Database`), migrates on construction, and opens one
connection per thread: Gradio runs handlers on worker threads and sqlite3 connections must not cross
threads. WAL lets readers proceed during writes; the busy timeout makes concurrent writers wait instead of
failing. Each write is one transaction, so a crash never leaves half a turn. Only model *names* and
settings are stored, never API keys.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path

import sqlite_utils

from convfill.errors import ConvFillError
from convfill.events import (ChunkArrived, Event, FirstToken, PhraseDelta, PhraseEnded, PhraseStarted,
                             TurnEnded, TurnStarted)
from convfill.metrics import turn_metrics

from .migrations import migrate

BUSY_TIMEOUT_MS = 10_000  # how long a writer waits for another writer's lock before StoreError
_SECRET_KEYS = ("api_key", "key", "token", "secret", "password", "authorization")


class StoreError(ConvFillError):
    """The database could not be read or written (locked too long, corrupt, not writable)."""


def _scrub(d: dict | None) -> str | None:
    """JSON of a settings dict with anything that looks like a secret removed."""
    if d is None:
        return None
    clean = {k: v for k, v in d.items() if not any(s in k.lower() for s in _SECRET_KEYS)}
    return json.dumps(clean, sort_keys=True, default=str)


def _iso(ts: float | None = None) -> str:
    return datetime.fromtimestamp(ts if ts is not None else time.time(), timezone.utc).isoformat()


class LabelStore:
    """Conversations, turns, chunks, phrases and events (and, via later migrations, labels).

    Args:
        db: a path, a `sqlite_utils.Database` (used as is, single-threaded), or None for
            `convfill.paths.db_path()`.
        busy_timeout_ms: how long a write waits for another writer before `StoreError`.
    """

    def __init__(self, db: str | os.PathLike | sqlite_utils.Database | None = None,
                 busy_timeout_ms: int = BUSY_TIMEOUT_MS):
        self.busy_timeout_ms = busy_timeout_ms
        self._given = db if isinstance(db, sqlite_utils.Database) else None
        if self._given is None:
            from convfill.paths import db_path

            self.path = Path(db) if db is not None else db_path()
            self.path.parent.mkdir(parents=True, exist_ok=True)
        else:
            self.path = None
        self._local = threading.local()
        self._guard(lambda: migrate(self.db))

    @property
    def db(self) -> sqlite_utils.Database:
        """This thread's connection."""
        if self._given is not None:
            return self._given
        db = getattr(self._local, "db", None)
        if db is None:
            conn = sqlite3.connect(str(self.path), timeout=self.busy_timeout_ms / 1000)
            conn.execute(f"pragma busy_timeout = {int(self.busy_timeout_ms)}")
            conn.execute("pragma journal_mode = wal")
            conn.execute("pragma foreign_keys = on")
            db = self._local.db = sqlite_utils.Database(conn)
        return db

    def _guard(self, fn):
        try:
            return fn()
        except sqlite3.OperationalError as e:
            where = self.path or "the database"
            if "locked" in str(e) or "busy" in str(e):
                raise StoreError(f"{where} stayed locked for {self.busy_timeout_ms / 1000:g} s by another writer; "
                                 "nothing was written, try again.") from e
            raise StoreError(f"Cannot use {where}: {e}") from e

    # ------------------------------------------------------------------------------------------- write
    def new_conversation(self, source: str = "chat", meta: dict | None = None) -> str:
        """Create a conversation and return its id."""
        cid = uuid.uuid4().hex

        def write():
            with self.db.conn:
                self.db["conversations"].insert({"id": cid, "created_at": _iso(), "source": source,
                                                 "meta": _scrub(meta)})
        self._guard(write)
        return cid

    def record_turn(self, conversation_id: str, events: Iterable[Event], talker: dict | None = None,
                    reasoner: dict | None = None, config: dict | None = None) -> str:
        """Persist one finished turn (all rows in one transaction) and return its id."""
        events = [e for e in events if not isinstance(e, PhraseDelta)]
        start = next(e for e in events if isinstance(e, TurnStarted))
        end = next((e for e in events if isinstance(e, TurnEnded)), None)
        m = turn_metrics(events)
        started = {e.phrase_index: e.t_ms for e in events if isinstance(e, PhraseStarted)}
        first = {e.phrase_index: e.t_ms for e in events if isinstance(e, FirstToken)}

        def write():
            db = self.db
            with db.conn:
                n = db.execute("select count(*) from turns where conversation_id = ?",
                               [conversation_id]).fetchone()[0]
                db["turns"].insert({
                    "id": start.turn_id, "conversation_id": conversation_id, "turn_index": n,
                    "user": start.user, "reply": end.reply if end else "",
                    "end_reason": end.reason if end else "incomplete", "started_at": _iso(start.wall_time),
                    "talker": _scrub(talker), "reasoner": _scrub(reasoner), "config": _scrub(config),
                    "talker_ttft_ms": m.talker_ttft_ms, "reasoner_first_chunk_ms": m.reasoner_first_chunk_ms,
                    "first_knowledge_phrase_ms": m.first_knowledge_phrase_ms,
                    "chunk_to_phrase_lag_ms": m.chunk_to_phrase_lag_ms, "n_fillers": m.n_fillers,
                    "n_chunks": m.n_chunks, "total_ms": m.total_ms,
                })
                db["chunks"].insert_all(
                    {"turn_id": start.turn_id, "chunk_index": e.chunk_index, "text": e.text, "t_ms": e.t_ms}
                    for e in events if isinstance(e, ChunkArrived))
                db["phrases"].insert_all(
                    {"turn_id": start.turn_id, "phrase_index": e.phrase_index, "source": e.source,
                     "chunk_index": e.chunk_index, "text": e.text, "started_ms": started.get(e.phrase_index),
                     "first_token_ms": first.get(e.phrase_index), "ended_ms": e.t_ms, "n_tokens": e.n_tokens,
                     "cancelled": int(e.cancelled)}
                    for e in events if isinstance(e, PhraseEnded))
                db["events"].insert_all(
                    {"turn_id": start.turn_id, "seq": i, "type": e.type, "t_ms": e.t_ms,
                     "data": json.dumps(e.to_dict())}
                    for i, e in enumerate(events))
        self._guard(write)
        return start.turn_id

    # -------------------------------------------------------------------------------------------- read
    def turns(self, conversation_id: str) -> list[dict]:
        return list(self.db["turns"].rows_where("conversation_id = ?", [conversation_id],
                                                order_by="turn_index"))

    def phrases(self, turn_id: str) -> list[dict]:
        return list(self.db["phrases"].rows_where("turn_id = ?", [turn_id], order_by="phrase_index"))

    def chunks(self, turn_id: str) -> list[dict]:
        return list(self.db["chunks"].rows_where("turn_id = ?", [turn_id], order_by="chunk_index"))

    def turn_events(self, turn_id: str) -> list[Event]:
        from convfill.events import event_from_dict

        return [event_from_dict(json.loads(r["data"]))
                for r in self.db["events"].rows_where("turn_id = ?", [turn_id], order_by="seq")]


class TurnRecorder:
    """Engine observer that writes each turn to the store when it ends.

    Args:
        store: where to write.
        conversation_id: the conversation the turns belong to (created when None).
        talker, reasoner, config: descriptions stored with every turn (`describe()` dicts, no secrets).
    """

    def __init__(self, store: LabelStore, conversation_id: str | None = None, talker: dict | None = None,
                 reasoner: dict | None = None, config: dict | None = None, source: str = "chat"):
        self.store = store
        self.conversation_id = conversation_id or store.new_conversation(source)
        self.talker, self.reasoner, self.config = talker, reasoner, config
        self._events: list[Event] = []
        self.last_turn_id: str | None = None

    def __call__(self, ev: Event) -> None:
        if isinstance(ev, PhraseDelta):
            return
        if isinstance(ev, TurnStarted):
            self._events = []
        self._events.append(ev)
        if isinstance(ev, TurnEnded):
            self.last_turn_id = self.store.record_turn(self.conversation_id, self._events, self.talker,
                                                       self.reasoner, self.config)
