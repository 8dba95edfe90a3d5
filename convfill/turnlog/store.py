"""The turn log: every conversation, turn, knowledge chunk, phrase and event, in one SQLite file.

`TurnLog` takes a path (or a `sqlite_utils.Database`), migrates on construction (`schema.py`), and opens one
connection per thread: Gradio runs handlers on worker threads and sqlite3 connections must not cross
threads. WAL lets readers proceed during writes; the busy timeout makes concurrent writers wait instead of
failing. A chat turn is written as it happens (its row, then each chunk and phrase, then its outcome), so a
crash loses at most the phrase being generated; the app writes through `recorder.StoreWriter`, off the event
loop. Only model *names* and settings are stored, never API keys. The workbench's suggestions and labels live
in the same file (`labeling.store.LabelStore` extends this class).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import sqlite_utils

from ..errors import ConvFillError
from ..events import ChunkArrived, Event, TurnStarted, event_from_dict
from ..fold import PhraseRecord, TurnFold, persisted
from ..metrics import turn_metrics
from .. import conversations
from ..paths import db_path, journal_mode
from .schema import migrate

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


def utc_iso(ts: float | None = None) -> str:
    return datetime.fromtimestamp(ts if ts is not None else time.time(), timezone.utc).isoformat()


def _chunk_row(turn_id: str, e: ChunkArrived) -> dict:
    return {"turn_id": turn_id, "chunk_index": e.chunk_index, "text": e.text, "t_ms": e.t_ms}


def _phrase_row(turn_id: str, p: PhraseRecord) -> dict:
    return {"turn_id": turn_id, "phrase_index": p.index, "source": p.source, "chunk_index": p.chunk_index,
            "text": p.text, "started_ms": p.started_ms, "first_token_ms": p.first_token_ms, "ended_ms": p.ended_ms,
            "n_tokens": p.n_tokens, "cancelled": int(p.cancelled)}


@dataclass(frozen=True)
class ImportResult:
    """What `TurnLog.import_convfill` did.

    Parameters:
        conversations: conversations added.
        turns: turns added.
        phrases: phrases added.
        skipped: conversations already in the store (same content), not added again.
    """

    conversations: int
    turns: int
    phrases: int
    skipped: int



class TurnLog:
    """Conversations, turns, chunks, phrases and events: what was said, and when.

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
            conn.execute(f"pragma journal_mode = {journal_mode(self.path)}")
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
    def new_conversation(self, source: str = "chat", meta: dict | None = None,
                         conversation_id: str | None = None) -> str:
        """Create a conversation (with the given id, if any; again with the same id: nothing) and return its id."""
        cid = conversation_id or uuid.uuid4().hex

        def write():
            with self.db.conn:
                self.db.execute("insert or ignore into conversations (id, created_at, source, meta) "
                                "values (?, ?, ?, ?)", [cid, utc_iso(), source, _scrub(meta)])
        self._guard(write)
        return cid

    # A turn is written as it happens, so a crash or kill loses at most the phrase being generated:
    # `begin_turn` at TurnStarted, `add_chunk` / `add_phrase` as they arrive, `end_turn` at TurnEnded. Each
    # is one transaction and can be repeated after a failure without duplicating rows (unique indexes).
    def begin_turn(self, conversation_id: str, start: TurnStarted, talker: dict | None = None,
                   reasoner: dict | None = None, config: dict | None = None) -> None:
        def write():
            with self.db.conn:
                if self.db.execute("select 1 from turns where id = ?", [start.turn_id]).fetchone():
                    return
                n = self.db.execute("select count(*) from turns where conversation_id = ?",
                                    [conversation_id]).fetchone()[0]
                self.db["turns"].insert({
                    "id": start.turn_id, "conversation_id": conversation_id, "turn_index": n, "user": start.user,
                    "reply": "", "end_reason": "incomplete", "started_at": utc_iso(start.wall_time),
                    "talker": _scrub(talker), "reasoner": _scrub(reasoner), "config": _scrub(config)})
        self._guard(write)

    def add_chunk(self, turn_id: str, ev: ChunkArrived) -> None:
        self._guard(lambda: self._insert_rows("chunks", [_chunk_row(turn_id, ev)]))

    def add_phrase(self, turn_id: str, phrase: PhraseRecord) -> None:
        """An ended phrase (from the turn's `TurnFold`: its start and first-token times come with it)."""
        self._guard(lambda: self._insert_rows("phrases", [_phrase_row(turn_id, phrase)]))

    def end_turn(self, turn_id: str, events: Sequence[Event]) -> None:
        """The turn's outcome and metrics, and its full event log (token deltas excepted)."""
        events = persisted(events)
        self._end_turn(turn_id, events, TurnFold.of(events))

    def _end_turn(self, turn_id: str, events: list[Event], fold: TurnFold) -> None:
        end, m = fold.end, turn_metrics(fold)

        def write():
            with self.db.conn:
                values = {"reply": end.reply if end else "", "end_reason": end.reason if end else "incomplete",
                          "talker_ttft_ms": m.talker_ttft_ms, "reasoner_first_chunk_ms": m.reasoner_first_chunk_ms,
                          "first_knowledge_phrase_ms": m.first_knowledge_phrase_ms,
                          "chunk_to_phrase_lag_ms": m.chunk_to_phrase_lag_ms, "n_fillers": m.n_fillers,
                          "n_chunks": m.n_chunks, "total_ms": m.total_ms, "voice_to_voice_ms": m.voice_to_voice_ms,
                          "voiced_first_ms": m.voiced_first_ms, "asr_ms": m.asr_ms, "dead_air_ms": m.dead_air_ms}
                cur = self.db.execute(f"update turns set {', '.join(f'{k} = ?' for k in values)} where id = ?",
                                      [*values.values(), turn_id])
                if cur.rowcount == 0:
                    raise StoreError(f"turn {turn_id} is not in the store (its start was not saved)")
                self.db["events"].insert_all(
                    ({"turn_id": turn_id, "seq": i, "type": e.type, "t_ms": e.t_ms, "data": json.dumps(e.to_dict())}
                     for i, e in enumerate(events)), ignore=True)
        self._guard(write)

    def _insert_rows(self, table: str, rows: list[dict]) -> None:
        with self.db.conn:
            self.db[table].insert_all(rows, ignore=True)

    def record_turn(self, conversation_id: str, events: Iterable[Event], talker: dict | None = None,
                    reasoner: dict | None = None, config: dict | None = None) -> str:
        """Persist one finished turn (batch use: imports, evaluation) and return its id."""
        events = persisted(events)
        fold = TurnFold.of(events)
        start = fold.start
        if start is None:
            raise StoreError("a turn's events must begin with TurnStarted")
        self.begin_turn(conversation_id, start, talker, reasoner, config)
        self._guard(lambda: self._insert_rows("chunks", [_chunk_row(start.turn_id, c) for c in fold.chunks.values()]))
        self._guard(lambda: self._insert_rows("phrases", [_phrase_row(start.turn_id, p)
                                                          for p in fold.ended_phrases()]))
        self._end_turn(start.turn_id, events, fold)
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
        return [event_from_dict(json.loads(r["data"]))
                for r in self.db["events"].rows_where("turn_id = ?", [turn_id], order_by="seq")]

    @contextmanager
    def _write(self):
        """One write transaction that takes SQLite's write lock up front (BEGIN IMMEDIATE).

        Race: a deferred transaction that reads (e.g. the current label) and then writes fails at once with
        SQLITE_BUSY, without honouring the busy timeout, when another thread committed in between (WAL
        snapshot conflict). Taking the lock at BEGIN makes concurrent writers queue on the busy timeout, so
        label writes from Gradio worker threads serialise instead of failing.
        """
        db = self.db
        db.conn.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            if db.conn.in_transaction:
                db.conn.execute("ROLLBACK")
            raise
        else:
            db.conn.execute("COMMIT")

    def import_convfill(self, path: str | os.PathLike, reasoner: str = "import") -> ImportResult:
        """Add every conversation of a ConvFill JSONL file (source "import"), in one transaction.

        The whole file is validated first, so a bad line imports nothing. A conversation whose content is
        already in the store (same turns) is skipped, so importing a file twice duplicates nothing.

        Args:
            path: the JSONL file (`{"conversation": [{"user", "thoughts", "response"}]}` per line).
            reasoner: the Reasoner name stored with the turns (the queue can filter on it).
        """
        lines = list(conversations.read(path))
        name = Path(path).name
        counts = {"conversations": 0, "turns": 0, "phrases": 0, "skipped": 0}

        def write():
            with self._write() as db:
                seen = {r[0] for r in db.execute(
                    "select json_extract(meta, '$.sha1') from conversations where source = 'import'")}
                convs, turns, chunks, phrases = [], [], [], []
                for n, conv in lines:
                    sha = hashlib.sha1(json.dumps(conv, sort_keys=True).encode()).hexdigest()
                    if sha in seen:
                        counts["skipped"] += 1
                        continue
                    seen.add(sha)
                    cid = uuid.uuid4().hex
                    convs.append({"id": cid, "created_at": utc_iso(), "source": "import",
                                  "meta": _scrub({"file": name, "line": n, "sha1": sha})})
                    for ti, turn in enumerate(conv):
                        tid = uuid.uuid4().hex
                        turns.append({"id": tid, "conversation_id": cid, "turn_index": ti, "user": turn["user"],
                                      "reply": " ".join(turn["response"]), "end_reason": "done",
                                      "started_at": utc_iso(), "reasoner": _scrub({"reasoner": reasoner}),
                                      "n_fillers": sum(conversations.is_sil(t) for t in turn["thoughts"]),
                                      "n_chunks": sum(not conversations.is_sil(t) for t in turn["thoughts"])})
                        ci = 0
                        for pi, (thought, phrase) in enumerate(zip(turn["thoughts"], turn["response"])):
                            chunk_index = None
                            if not conversations.is_sil(thought):
                                chunks.append({"turn_id": tid, "chunk_index": ci, "text": thought})
                                chunk_index, ci = ci, ci + 1
                            phrases.append({"turn_id": tid, "phrase_index": pi, "text": phrase, "cancelled": 0,
                                            "source": "sil" if chunk_index is None else "chunk",
                                            "chunk_index": chunk_index})
                db["conversations"].insert_all(convs)
                db["turns"].insert_all(turns)
                db["chunks"].insert_all(chunks)
                db["phrases"].insert_all(phrases)
                counts.update(conversations=len(convs), turns=len(turns), phrases=len(phrases))
        self._guard(write)
        return ImportResult(**counts)
