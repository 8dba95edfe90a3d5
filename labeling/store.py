"""The workbench's part of the store: model suggestions, human labels, the labeling queue and undo.

`LabelStore` is the core turn log (`convfill.turnlog.TurnLog`: conversations, turns, chunks, phrases) plus
what people and judges say about each phrase, in the same SQLite file and through the same connections.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from convfill.nli import NLIPair, normalize_label, premise_for
from convfill.nli.judge import Suggestion
from convfill.turnlog import StoreError, TurnLog
from convfill.turnlog.store import utc_iso

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


class LabelStore(TurnLog):
    """The turn log plus model suggestions and human labels (see the module docstring)."""

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
        """The judge's input for each phrase, built with `convfill.nli.judge.premise_for`."""
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
        now = utc_iso()
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
        now = utc_iso()

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
        now = utc_iso()

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
