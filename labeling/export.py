"""Exports of the labeled store: ConvFill JSONL for retraining, CSV for analysis.

The JSONL rule (also in README "Labeling" and the tab's guidelines), per phrase:

1. Verdict. If any person labeled the phrase, the verdict is the most common human label; a tie goes to
   the more cautious label (contradiction > neutral > entailment). Otherwise the verdict is the label of the
   latest model suggestion. A phrase nobody judged has no verdict.
2. A knowledge phrase (from a chunk) is kept only when the verdict is **entailment**: a model "neutral"
   that a person relabeled as entailment is kept; a human "neutral" is dropped.
3. A filler (from `<sil>`) is kept when the verdict is entailment or neutral: it only has to invent
   nothing, and a filler is rarely entailed by the user's question. Contradiction drops it.
4. Always dropped: no verdict, contradiction, phrases cut short by barge-in (`cancelled`), and the fixed
   "cannot reach my knowledge source" phrase (source "error").

Kept phrases keep their order and their thought (`"<sil>"` or the chunk text). Turns left without a phrase
are dropped, and so are conversations left without a turn, so every exported turn has at least one
(thought, response) pair. Files are written to a temporary name and renamed, so a failed export never
leaves a half-written file behind.
"""

from __future__ import annotations

import csv
import json
import os
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from convfill.prompt import SIL
from convfill.untrusted import csv_cell

from .store import LabelStore

_CAUTION = {"contradiction": 2, "neutral": 1, "entailment": 0}


@dataclass(frozen=True)
class ExportStats:
    """What an export wrote.

    Parameters:
        conversations: conversations (JSONL lines) written; 0 for CSV.
        turns: turns written; 0 for CSV.
        phrases: phrases kept (JSONL) or described (CSV); knowledge chunks (replay).
        dropped: phrases left out of the JSONL.
        rows: CSV rows written; 0 for JSONL.
    """

    conversations: int = 0
    turns: int = 0
    phrases: int = 0
    dropped: int = 0
    rows: int = 0


def human_verdict(labels: list[str]) -> str | None:
    """Most common human label; ties go to the more cautious label."""
    if not labels:
        return None
    c = Counter(labels)
    return max(c, key=lambda k: (c[k], _CAUTION[k]))


def verdict(human: list[str], model: str | None) -> tuple[str | None, str]:
    """(label, who decided: "human" | "model" | "none") for one phrase."""
    h = human_verdict(human)
    if h is not None:
        return h, "human"
    return (model, "model") if model else (None, "none")


def acceptable(source: str, cancelled: bool, label: str | None) -> bool:
    """Whether a phrase with this verdict goes into the training export (rules 2-4 above)."""
    if label is None or cancelled or source == "error":
        return False
    if source == "chunk":
        return label == "entailment"
    return label in ("entailment", "neutral")


def _collect(store: LabelStore):
    rows = store.phrase_rows()
    humans: dict[int, list[dict]] = defaultdict(list)
    for r in store.db["labels"].rows_where(order_by="phrase_id, annotator"):
        humans[r["phrase_id"]].append(r)
    sugg: dict[int, list[dict]] = defaultdict(list)
    for r in store.db["suggestions"].rows_where(order_by="id"):
        r["probs"] = json.loads(r["probs"] or "{}")
        sugg[r["phrase_id"]].append(r)
    return rows, humans, sugg


def _atomic_write(out: Path, write) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        with tmp.open("w", encoding="utf-8", newline="") as f:
            write(f)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)


def export_jsonl(store: LabelStore, out: str | os.PathLike) -> ExportStats:
    """Write acceptable phrases as ConvFill conversation JSONL (see the module docstring for the rule)."""
    rows, humans, sugg = _collect(store)
    convs: dict[str, dict[int, dict]] = {}
    kept = dropped = 0
    for r in rows:
        model = sugg[r["id"]][-1]["label"] if sugg.get(r["id"]) else None
        label, _ = verdict([h["label"] for h in humans.get(r["id"], [])], model)
        if not acceptable(r["source"], bool(r["cancelled"]), label):
            dropped += 1
            continue
        kept += 1
        turn = convs.setdefault(r["conversation_id"], {}).setdefault(
            r["turn_index"], {"user": r["user"], "thoughts": [], "response": []})
        turn["thoughts"].append(r["knowledge"] if r["source"] == "chunk" and r["knowledge"] is not None else SIL)
        turn["response"].append(r["text"])
    n_turns = sum(len(t) for t in convs.values())

    def write(f):
        for cid in convs:  # rows come ordered by conversation, turn, phrase
            f.write(json.dumps({"conversation": [convs[cid][i] for i in sorted(convs[cid])]},
                               ensure_ascii=False) + "\n")
    _atomic_write(Path(out), write)
    return ExportStats(conversations=len(convs), turns=n_turns, phrases=kept, dropped=dropped)


def export_replay(store: LabelStore, out: str | os.PathLike) -> ExportStats:
    """Every stored turn that received knowledge, as a recording for `convfill.reasoners.replay`: the user's
    message and each chunk with its arrival time (imported turns, which have no times, replay at 0 ms)."""
    rows = store.db.execute("select t.id, t.user, c.t_ms, c.text from turns t join chunks c on c.turn_id = t.id "
                            "order by t.started_at, t.id, c.chunk_index").fetchall()
    turns: dict[str, dict] = {}
    for tid, user, t_ms, text in rows:
        turns.setdefault(tid, {"user": user, "chunks": []})["chunks"].append({"t_ms": t_ms or 0.0, "text": text})

    def write(f):
        for t in turns.values():
            f.write(json.dumps(t, ensure_ascii=False) + "\n")
    _atomic_write(Path(out), write)
    return ExportStats(conversations=0, turns=len(turns), phrases=sum(len(t["chunks"]) for t in turns.values()))


CSV_COLUMNS = ["phrase_id", "conversation_id", "turn_index", "phrase_index", "source", "cancelled", "user",
               "knowledge", "earlier", "phrase", "kind", "who", "label", "p_entailment", "p_neutral",
               "p_contradiction", "note", "at", "verdict", "verdict_by", "exported"]


def export_csv(store: LabelStore, out: str | os.PathLike) -> ExportStats:
    """Write one row per judgement: every human label (kind "human", who = annotator) and every model
    suggestion (kind "model", who = model id, with its probabilities); a phrase nobody judged gets one row
    with an empty kind. Each row repeats the phrase's context, final verdict and whether JSONL keeps it."""
    rows, humans, sugg = _collect(store)
    earlier: dict[str, list[str]] = defaultdict(list)
    n = 0

    def write(f):
        nonlocal n
        w = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        w.writeheader()
        for r in rows:
            prev = earlier[r["turn_id"]]
            model = sugg[r["id"]][-1]["label"] if sugg.get(r["id"]) else None
            label, by = verdict([h["label"] for h in humans.get(r["id"], [])], model)
            base = {"phrase_id": r["id"], "conversation_id": r["conversation_id"], "turn_index": r["turn_index"],
                    "phrase_index": r["phrase_index"], "source": r["source"], "cancelled": r["cancelled"],
                    "user": r["user"], "knowledge": r["knowledge"] if r["source"] == "chunk" else "",
                    "earlier": " ".join(prev), "phrase": r["text"], "verdict": label or "", "verdict_by": by,
                    "exported": int(acceptable(r["source"], bool(r["cancelled"]), label))}
            judged = [{"kind": "human", "who": h["annotator"], "label": h["label"], "note": h["note"] or "",
                       "at": h["updated_at"]} for h in humans.get(r["id"], [])]
            judged += [{"kind": "model", "who": s["model_id"], "label": s["label"], "at": s["created_at"],
                        **{f"p_{k}": s["probs"].get(k) for k in ("entailment", "neutral", "contradiction")}}
                       for s in sugg.get(r["id"], [])]
            for j in judged or [{"kind": ""}]:
                w.writerow({k: csv_cell(v) for k, v in {**base, **j}.items()})
                n += 1
            prev.append(r["text"])
    _atomic_write(Path(out), write)
    return ExportStats(phrases=len(rows), rows=n)
