"""Schema of the shared SQLite store, as an append-only list of migrations (llm's pattern).

Never edit a migration that has shipped: add a new one. `migrate(db)` applies the missing ones in order
and records each in `_migrations`, so every database converges to the same schema.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlite_utils

MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = []


def migration(fn: Callable[[sqlite_utils.Database], None]):
    MIGRATIONS.append(fn)
    return fn


def migrate(db: sqlite_utils.Database) -> list[str]:
    """Apply pending migrations; return the names applied now."""
    db["_migrations"].create({"name": str, "applied_at": str}, pk="name", if_not_exists=True)
    done = {r["name"] for r in db["_migrations"].rows}
    applied = []
    for fn in MIGRATIONS:
        if fn.__name__ in done:
            continue
        with db.conn:
            fn(db)
            db.execute("insert into _migrations (name, applied_at) values (?, datetime('now'))", [fn.__name__])
        applied.append(fn.__name__)
    return applied


@migration
def m001_conversations_turns(db: sqlite_utils.Database) -> None:
    db["conversations"].create({"id": str, "created_at": str, "source": str, "meta": str}, pk="id")
    db["turns"].create({
        "id": str, "conversation_id": str, "turn_index": int, "user": str, "reply": str,
        "end_reason": str, "started_at": str, "talker": str, "reasoner": str, "config": str,
        "talker_ttft_ms": float, "reasoner_first_chunk_ms": float, "first_knowledge_phrase_ms": float,
        "chunk_to_phrase_lag_ms": float, "n_fillers": int, "n_chunks": int, "total_ms": float,
    }, pk="id", foreign_keys=[("conversation_id", "conversations", "id")])
    db["turns"].create_index(["conversation_id", "turn_index"], unique=True)
    db["chunks"].create({"id": int, "turn_id": str, "chunk_index": int, "text": str, "t_ms": float},
                        pk="id", foreign_keys=[("turn_id", "turns", "id")])
    db["chunks"].create_index(["turn_id", "chunk_index"], unique=True)
    db["phrases"].create({
        "id": int, "turn_id": str, "phrase_index": int, "source": str, "chunk_index": int, "text": str,
        "started_ms": float, "first_token_ms": float, "ended_ms": float, "n_tokens": int, "cancelled": int,
    }, pk="id", foreign_keys=[("turn_id", "turns", "id")])
    db["phrases"].create_index(["turn_id", "phrase_index"], unique=True)
    db["events"].create({"id": int, "turn_id": str, "seq": int, "type": str, "t_ms": float, "data": str},
                        pk="id", foreign_keys=[("turn_id", "turns", "id")])
    db["events"].create_index(["turn_id", "seq"], unique=True)


@migration
def m002_suggestions_labels(db: sqlite_utils.Database) -> None:
    """Model suggestions and human labels, kept apart so a model can never overwrite a person.

    `suggestions`: one row per (phrase, model); re-scoring with the same model replaces it.
    `labels`: the current label of each (phrase, annotator). Every change to it, including undo, is also
    appended to `label_history` (old and new value), so no label is ever lost or silently overwritten.
    """
    db["suggestions"].create({
        "id": int, "phrase_id": int, "model_id": str, "label": str, "probs": str, "filler": int,
        "created_at": str,
    }, pk="id", foreign_keys=[("phrase_id", "phrases", "id")])
    db["suggestions"].create_index(["phrase_id", "model_id"], unique=True)
    db["labels"].create({
        "id": int, "phrase_id": int, "annotator": str, "label": str, "note": str, "created_at": str,
        "updated_at": str,
    }, pk="id", foreign_keys=[("phrase_id", "phrases", "id")])
    db["labels"].create_index(["phrase_id", "annotator"], unique=True)
    db["labels"].create_index(["annotator"])
    db["label_history"].create({
        "id": int, "phrase_id": int, "annotator": str, "action": str, "old_label": str, "new_label": str,
        "old_note": str, "new_note": str, "reverts": int, "at": str,
    }, pk="id", foreign_keys=[("phrase_id", "phrases", "id")])
    db["label_history"].create_index(["phrase_id", "annotator"])


@migration
def m003_voice(db: sqlite_utils.Database) -> None:
    """Voice turns: their speech latencies, next to the text latencies (the `reply` of a voiced turn is what
    the listener heard; what was generated stays in `phrases`, the played spans in `events`)."""
    for col in ("voice_to_voice_ms", "voiced_first_ms", "asr_ms", "dead_air_ms"):
        db["turns"].add_column(col, float)
