"""The one SQLite store behind both app tabs: chat turns are written here, the labeling tab reads them.

`LabelStore` takes a path (or a `sqlite_utils.Database`), migrates on construction, and opens one
connection per thread: Gradio runs handlers on worker threads and sqlite3 connections must not cross
threads. WAL lets readers proceed during writes; the busy timeout makes concurrent writers wait instead of
failing. A chat turn is written as it happens (its row, then each chunk and phrase, then its outcome), so a
crash loses at most the phrase being generated; the app writes through `labeling.recorder.StoreWriter`, off
the event loop. Only model *names* and settings are stored, never API keys.
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

from convfill.errors import ConvFillError
from convfill.events import (ChunkArrived, Event, FirstToken, PhraseDelta, PhraseEnded, PhraseStarted,
                             TurnEnded, TurnStarted)
from convfill.metrics import turn_metrics
from convfill.paths import journal_mode

from .migrations import migrate
from .nli import NLIPair, Suggestion, normalize_label, premise_for

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


def _chunk_row(turn_id: str, e: ChunkArrived) -> dict:
    return {"turn_id": turn_id, "chunk_index": e.chunk_index, "text": e.text, "t_ms": e.t_ms}


def _phrase_row(turn_id: str, e: PhraseEnded, started_ms: float | None, first_token_ms: float | None) -> dict:
    return {"turn_id": turn_id, "phrase_index": e.phrase_index, "source": e.source, "chunk_index": e.chunk_index,
            "text": e.text, "started_ms": started_ms, "first_token_ms": first_token_ms, "ended_ms": e.t_ms,
            "n_tokens": e.n_tokens, "cancelled": int(e.cancelled)}


@dataclass(frozen=True)
class ImportResult:
    """What `LabelStore.import_convfill` did.

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


@dataclass(frozen=True)
class Progress:
    """Labeling progress for one annotator and for everybody.

    Parameters:
        mine: phrases this annotator labeled.
        labeled: phrases labeled by at least one person.
        total: phrases that can be labeled (error phrases excluded).
        scored: phrases with at least one model suggestion.
        annotators: people who labeled anything.
    """

    mine: int
    labeled: int
    total: int
    scored: int
    annotators: int


ANNOTATOR_MAX = 80  # characters of an annotator name
NOTE_MAX = 2000  # characters of a label note
# Phrases people can label: the honest "cannot reach my knowledge source" phrase is fixed text, not a
# Talker generation, so it is neither judged, queued nor exported.
_LABELABLE = "p.source != 'error' and trim(p.text) != ''"


class LabelStore:
    """Conversations, turns, chunks, phrases and events, plus model suggestions and human labels.

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
                                "values (?, ?, ?, ?)", [cid, _iso(), source, _scrub(meta)])
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
                    "reply": "", "end_reason": "incomplete", "started_at": _iso(start.wall_time),
                    "talker": _scrub(talker), "reasoner": _scrub(reasoner), "config": _scrub(config)})
        self._guard(write)

    def add_chunk(self, turn_id: str, ev: ChunkArrived) -> None:
        self._guard(lambda: self._insert_rows("chunks", [_chunk_row(turn_id, ev)]))

    def add_phrase(self, turn_id: str, ev: PhraseEnded, started_ms: float | None, first_token_ms: float | None) -> None:
        self._guard(lambda: self._insert_rows("phrases", [_phrase_row(turn_id, ev, started_ms, first_token_ms)]))

    def end_turn(self, turn_id: str, events: Sequence[Event]) -> None:
        """The turn's outcome and metrics, and its full event log (token deltas excepted)."""
        events = [e for e in events if not isinstance(e, PhraseDelta)]
        end = next((e for e in events if isinstance(e, TurnEnded)), None)
        m = turn_metrics(events)

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
        events = [e for e in events if not isinstance(e, PhraseDelta)]
        start = next(e for e in events if isinstance(e, TurnStarted))
        started = {e.phrase_index: e.t_ms for e in events if isinstance(e, PhraseStarted)}
        first = {e.phrase_index: e.t_ms for e in events if isinstance(e, FirstToken)}
        self.begin_turn(conversation_id, start, talker, reasoner, config)
        self._guard(lambda: self._insert_rows("chunks", [_chunk_row(start.turn_id, e) for e in events
                                                         if isinstance(e, ChunkArrived)]))
        self._guard(lambda: self._insert_rows("phrases", [
            _phrase_row(start.turn_id, e, started.get(e.phrase_index), first.get(e.phrase_index))
            for e in events if isinstance(e, PhraseEnded)]))
        self.end_turn(start.turn_id, events)
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

    # ------------------------------------------------------------------------------------ labeling
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
        from convfill import conversations

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
                    convs.append({"id": cid, "created_at": _iso(), "source": "import",
                                  "meta": _scrub({"file": name, "line": n, "sha1": sha})})
                    for ti, turn in enumerate(conv):
                        tid = uuid.uuid4().hex
                        turns.append({"id": tid, "conversation_id": cid, "turn_index": ti, "user": turn["user"],
                                      "reply": " ".join(turn["response"]), "end_reason": "done",
                                      "started_at": _iso(), "reasoner": _scrub({"reasoner": reasoner}),
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

    def phrase_rows(self, where: str = "1", params: Sequence = ()) -> list[dict]:
        sql = f"""select p.id, p.turn_id, p.phrase_index, p.source, p.chunk_index, p.text, p.cancelled,
                         t.user, t.conversation_id, t.turn_index, json_extract(t.reasoner, '$.reasoner') as reasoner,
                         c.text as knowledge
                  from phrases p join turns t on t.id = p.turn_id
                  join conversations cv on cv.id = t.conversation_id
                  left join chunks c on c.turn_id = p.turn_id and c.chunk_index = p.chunk_index
                  where {where} order by cv.rowid, t.turn_index, p.phrase_index"""
        return [dict(r) for r in self.db.query(sql, params)]

    def _earlier(self, turn_ids: Iterable[str]) -> dict[str, list[tuple[int, str]]]:
        """(phrase_index, text) of every phrase of the given turns, in order."""
        out: dict[str, list[tuple[int, str]]] = {}
        ids = list(set(turn_ids))
        for i in range(0, len(ids), 500):  # SQLite caps bound parameters
            part = ids[i:i + 500]
            for r in self.db.execute(
                    f"select turn_id, phrase_index, text from phrases where turn_id in ({','.join('?' * len(part))})"
                    " order by turn_id, phrase_index", part):
                out.setdefault(r[0], []).append((r[1], r[2]))
        return out

    def nli_pairs(self, phrase_ids: Sequence[int]) -> dict[int, NLIPair]:
        """The judge's input for each phrase, built with `labeling.nli.premise_for`."""
        rows = []
        ids = list(phrase_ids)
        for i in range(0, len(ids), 500):
            part = ids[i:i + 500]
            rows += self.phrase_rows(f"p.id in ({','.join('?' * len(part))})", part)
        earlier = self._earlier(r["turn_id"] for r in rows)
        return {r["id"]: premise_for(r["text"], user=r["user"],
                                     knowledge=r["knowledge"] if r["source"] == "chunk" else None,
                                     earlier=[t for i, t in earlier.get(r["turn_id"], []) if i < r["phrase_index"]])
                for r in rows}

    def unscored(self, model_id: str) -> list[int]:
        """Ids of labelable phrases that `model_id` has not judged yet."""
        return [r[0] for r in self.db.execute(
            f"select p.id from phrases p where {_LABELABLE} and not exists (select 1 from suggestions s "
            "where s.phrase_id = p.id and s.model_id = ?) order by p.id", [model_id])]

    def add_suggestions(self, items: Iterable[tuple[int, Suggestion]]) -> int:
        """Store model suggestions (replacing an older one by the same model); returns how many."""
        now = _iso()
        rows = [{"phrase_id": pid, "model_id": s.model_id, "label": normalize_label(s.label),
                 "probs": json.dumps({k: round(float(v), 6) for k, v in s.probs.items()}, sort_keys=True),
                 "filler": None, "created_at": now} for pid, s in items]

        def write():
            with self._write() as db:
                # Delete-then-insert gives the new row the highest id, which is what "latest" means below.
                db.conn.executemany("delete from suggestions where phrase_id = ? and model_id = ?",
                                    [(r["phrase_id"], r["model_id"]) for r in rows])
                db.conn.executemany(
                    "insert into suggestions (phrase_id, model_id, label, probs, filler, created_at) values "
                    "(?, ?, ?, ?, (select source != 'chunk' from phrases where id = ?), ?)",
                    [(r["phrase_id"], r["model_id"], r["label"], r["probs"], r["phrase_id"], r["created_at"])
                     for r in rows])
        self._guard(write)
        return len(rows)

    def suggestion(self, phrase_id: int, model_id: str | None = None) -> dict | None:
        """The latest suggestion for a phrase (by `model_id` when given), probs decoded."""
        q = "select * from suggestions where phrase_id = ?" + (" and model_id = ?" if model_id else "")
        rows = list(self.db.query(q + " order by id desc limit 1", [phrase_id] + ([model_id] if model_id else [])))
        if not rows:
            return None
        r = dict(rows[0])
        r["probs"] = json.loads(r["probs"] or "{}")
        return r

    def _queue_where(self, model_label: str | None = "neutral", min_score: float = 0.0, max_score: float = 1.0,
                     reasoner: str | None = None, annotated: bool | None = False, annotator: str | None = None,
                     model_id: str | None = None, exclude: Sequence[int] = (),
                     owner: str | None = None) -> tuple[str, list]:
        """FROM ... WHERE ... of the queue and its parameters (shared by `queue` and `queue_count`)."""
        where, params = [_LABELABLE], []
        sub = "select max(s2.id) from suggestions s2 where s2.phrase_id = p.id"
        if model_id:
            sub += " and s2.model_id = ?"
            params.append(model_id)
        if model_label and model_label != "any":
            if model_label == "unscored":
                where.append("s.id is null")
            else:
                where.append("s.label = ?")
                params.append(normalize_label(model_label))
        if min_score > 0 or max_score < 1:
            where.append("json_extract(s.probs, '$.' || s.label) between ? and ?")
            params += [float(min_score), float(max_score)]
        if reasoner:  # the join to turns is only paid for when filtering on it
            where.append("p.turn_id in (select id from turns where json_extract(reasoner, '$.reasoner') = ?)")
            params.append(reasoner)
        if annotated is not None:
            cond = "exists (select 1 from labels l where l.phrase_id = p.id" + \
                   (" and l.annotator = ?)" if annotator else ")")
            where.append(cond if annotated else "not " + cond)
            if annotator:
                params.append(annotator)
        if owner is not None:  # only the conversations of this visitor (`labeling.roles`)
            where.append("p.turn_id in (select t.id from turns t join conversations c on c.id = t.conversation_id "
                         "where json_extract(c.meta, '$.owner') = ?)")
            params.append(owner)
        if exclude:
            where.append(f"p.id not in ({','.join('?' * len(exclude))})")
            params += list(exclude)
        return (f"from phrases p left join suggestions s on s.id = ({sub}) where {' and '.join(where)}", params)

    def queue(self, *, limit: int = 50, **filters) -> list[int]:
        """Phrase ids to label next, oldest first.

        Args:
            limit: at most this many ids.
            model_label: only phrases whose latest suggestion has this label ("entailment", "neutral",
                "contradiction"; default "neutral"); "unscored" for phrases no model judged; None or "any"
                for all.
            min_score, max_score: range of the suggestion's score = the probability of its own label.
            reasoner: only turns answered by this Reasoner name.
            annotated: False (default) = not labeled yet (by `annotator`, or by anybody when None); True =
                already labeled (by `annotator`, or by anybody); None = either.
            annotator: whose labels `annotated` refers to.
            model_id: use this model's suggestions instead of the latest of any model.
            exclude: phrase ids to leave out (skipped ones).
            owner: only phrases of conversations stored under this owner (`meta.owner`).
        """
        sql, params = self._queue_where(**filters)
        return [r[0] for r in self.db.execute(f"select p.id {sql} order by p.id limit ?", params + [int(limit)])]

    def queue_count(self, **filters) -> int:
        """How many phrases `queue(**filters)` would return without a limit."""
        sql, params = self._queue_where(**filters)
        return self.db.execute(f"select count(*) {sql}", params).fetchone()[0]

    def item(self, phrase_id: int, annotator: str | None = None) -> dict | None:
        """Everything the labeling tab shows for one phrase (None when it does not exist)."""
        rows = self.phrase_rows("p.id = ?", [phrase_id])
        if not rows:
            return None
        r = rows[0]
        earlier = [t for i, t in self._earlier([r["turn_id"]]).get(r["turn_id"], []) if i < r["phrase_index"]]
        labels = self.labels(phrase_id=phrase_id)
        return {**r, "knowledge": r["knowledge"] if r["source"] == "chunk" else None, "earlier": earlier,
                "filler": r["source"] != "chunk", "suggestion": self.suggestion(phrase_id), "labels": labels,
                "mine": next((x["label"] for x in labels if annotator and x["annotator"] == annotator), None)}

    @staticmethod
    def _check_annotator(annotator: str) -> str:
        a = (annotator or "").strip()
        if not a:
            raise StoreError("Type your annotator name first: every label is stored with who gave it.")
        if len(a) > ANNOTATOR_MAX:
            raise StoreError(f"Annotator name is {len(a)} characters; at most {ANNOTATOR_MAX}.")
        return a

    def set_label(self, phrase_id: int, annotator: str, label: str, note: str | None = None) -> dict:
        """Record `annotator`'s label for a phrase; a change is an explicit, logged update.

        Returns:
            {"phrase_id", "annotator", "label", "previous", "action"}: action is "set" (first label),
            "update" (changed; the old value stays in `label_history`) or "unchanged".
        """
        annotator = self._check_annotator(annotator)
        try:
            label = normalize_label(label)
        except ValueError as e:
            raise StoreError(str(e)) from e
        note = (note or "").strip()[:NOTE_MAX] or None
        now = _iso()

        def write():
            with self._write() as db:
                if db.execute("select 1 from phrases where id = ?", [phrase_id]).fetchone() is None:
                    raise StoreError(f"No phrase with id {phrase_id}.")
                cur = db.execute("select label, note from labels where phrase_id = ? and annotator = ?",
                                 [phrase_id, annotator]).fetchone()
                if cur is not None and cur[0] == label and cur[1] == note:
                    return {"phrase_id": phrase_id, "annotator": annotator, "label": label, "previous": label,
                            "action": "unchanged"}
                if cur is None:
                    db.execute("insert into labels (phrase_id, annotator, label, note, created_at, updated_at) "
                               "values (?, ?, ?, ?, ?, ?)", [phrase_id, annotator, label, note, now, now])
                else:
                    db.execute("update labels set label = ?, note = ?, updated_at = ? "
                               "where phrase_id = ? and annotator = ?", [label, note, now, phrase_id, annotator])
                action = "set" if cur is None else "update"
                db.execute("insert into label_history (phrase_id, annotator, action, old_label, new_label, "
                           "old_note, new_note, at) values (?, ?, ?, ?, ?, ?, ?, ?)",
                           [phrase_id, annotator, action, cur[0] if cur else None, label,
                            cur[1] if cur else None, note, now])
                return {"phrase_id": phrase_id, "annotator": annotator, "label": label,
                        "previous": cur[0] if cur else None, "action": action}
        return self._guard(write)

    def undo_label(self, phrase_id: int, annotator: str) -> dict | None:
        """Revert `annotator`'s most recent not-yet-undone change on a phrase (logged as "undo").

        Repeated undos walk further back. Returns {"phrase_id", "label"} with the restored label (None when
        the phrase is unlabeled again), or None when there was nothing to undo.
        """
        annotator = self._check_annotator(annotator)
        now = _iso()

        def write():
            with self._write() as db:
                last = db.execute(
                    "select id, old_label, old_note, new_label, new_note from label_history h "
                    "where phrase_id = ? and annotator = ? and action != 'undo' and not exists "
                    "(select 1 from label_history u where u.reverts = h.id) order by id desc limit 1",
                    [phrase_id, annotator]).fetchone()
                if last is None:
                    return None
                hid, old_label, old_note, new_label, new_note = last
                if old_label is None:
                    db.execute("delete from labels where phrase_id = ? and annotator = ?", [phrase_id, annotator])
                else:
                    db.execute("update labels set label = ?, note = ?, updated_at = ? "
                               "where phrase_id = ? and annotator = ?",
                               [old_label, old_note, now, phrase_id, annotator])
                db.execute("insert into label_history (phrase_id, annotator, action, old_label, new_label, "
                           "old_note, new_note, reverts, at) values (?, ?, 'undo', ?, ?, ?, ?, ?, ?)",
                           [phrase_id, annotator, new_label, old_label, new_note, old_note, hid, now])
                return {"phrase_id": phrase_id, "label": old_label}
        return self._guard(write)

    def labels(self, phrase_id: int | None = None, annotator: str | None = None) -> list[dict]:
        """Current human labels, filtered by phrase and/or annotator."""
        where, params = [], []
        if phrase_id is not None:
            where.append("phrase_id = ?")
            params.append(phrase_id)
        if annotator is not None:
            where.append("annotator = ?")
            params.append(annotator)
        return list(self.db["labels"].rows_where(" and ".join(where) or None, params or None,
                                                 order_by="phrase_id, annotator"))

    def label_history(self, phrase_id: int, annotator: str | None = None) -> list[dict]:
        """Every change to a phrase's labels, oldest first."""
        q, params = "phrase_id = ?", [phrase_id]
        if annotator is not None:
            q, params = q + " and annotator = ?", params + [annotator]
        return list(self.db["label_history"].rows_where(q, params, order_by="id"))

    def labels_by_annotator(self) -> dict[str, dict[int, str]]:
        """{annotator: {phrase_id: label}} for agreement statistics."""
        out: dict[str, dict[int, str]] = {}
        for a, pid, lab in self.db.execute("select annotator, phrase_id, label from labels"):
            out.setdefault(a, {})[pid] = lab
        return out

    def label_counts(self, annotator: str | None = None) -> tuple[int, int, int]:
        """(labels by `annotator`, phrases labeled by anybody, annotators): index-only, cheap per key press."""
        one = lambda sql, p=(): self.db.execute(sql, list(p)).fetchone()[0]  # noqa: E731
        return (one("select count(*) from labels where annotator = ?", [annotator]) if annotator else 0,
                one("select count(distinct phrase_id) from labels"),
                one("select count(distinct annotator) from labels"))

    def progress(self, annotator: str | None = None) -> Progress:
        """How much is labeled, by `annotator` and by everybody (scans all phrases: not per key press)."""
        mine, labeled, annotators = self.label_counts(annotator)
        one = lambda sql: self.db.execute(sql).fetchone()[0]  # noqa: E731
        return Progress(mine=mine, labeled=labeled, annotators=annotators,
                        total=one(f"select count(*) from phrases p where {_LABELABLE}"),
                        scored=one("select count(distinct phrase_id) from suggestions"))

    def reasoners(self) -> list[str]:
        """Reasoner names that answered stored turns (for the queue filter)."""
        return [r[0] for r in self.db.execute(
            "select distinct json_extract(reasoner, '$.reasoner') as r from turns where r is not null order by r")]
