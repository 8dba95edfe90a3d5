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
