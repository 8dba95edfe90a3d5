"""Open-domain QA through the real engine: is the answer in what the user hears, and how soon do they hear it?

Items are NQ-open lines `{"question": str, "answer": [str, ...]}`. Each item is one fresh conversation
(a new `Engine`, so no history leaks between questions) run in one of three modes:

* `convfill` - the Talker speaks (fillers and all) while the Reasoner streams knowledge: the product.
* `reasoner` - the Reasoner alone answers and its stream is what is heard (`direct.reasoner_turn`).
  With the offline `local` Reasoner this is the small local model answering the question on its own.
* `talker`   - the Talker alone, with no Reasoner: `Engine(talker, None)`, i.e. exactly what a user hears
  when no knowledge ever arrives (contextual fillers, inventing nothing). Its accuracy is the floor that
  shows how often the Talker blurts an answer it was never given; the Talker's *own* knowledge is
  measured by `--mode reasoner --reasoner local` (the same small model prompted to answer).

The `oracle` Reasoner is given the gold answer as a knowledge sentence ("The answer is X.") with a
configurable latency, so `convfill` + `oracle` measures the Talker's knowledge retention ceiling offline.
Items may carry their own knowledge chunks (`"chunks": [...]` in the data file, or `--chunks FILE`): the
oracle then streams those, one chunk each at its delay profile (`knowledge="chunks"`; "terse" forces the
sentence above), the way a real Reasoner sends concise standalone sentences (data/eval/realistic_chunks.jsonl).

With `turns_per_conversation=K`, K consecutive items form one conversation on one `Engine`, so the Talker
sees the previous turn as in the app; the naturalness of its fillers (`naturalness.py`) is measured on
those conversations.

Correctness uses `normalize.match_answers` on `TurnEnded.reply`; latencies come from
`convfill.metrics.turn_metrics` and `summarize` only.
"""

from __future__ import annotations

import json
import random
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..clock import Clock
from ..config import EngineConfig
from ..engine import Engine
from ..errors import ConfigError
from ..events import Event, TurnEnded
from ..fold import persisted
from ..jsonl import read_jsonl
from ..metrics import TurnMetrics, summarize, turn_metrics
from ..reasoners.base import Reasoner
from ..reasoners.oracle import OracleReasoner
from ..talkers.base import Talker
from .direct import reasoner_turn
from .normalize import match_answers

MODES = ("convfill", "reasoner", "talker")

# Where the NQ-open dev split lies for developers and CI (absent on users' machines).
DEFAULT_DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "nq_open_dev.jsonl"


@dataclass(frozen=True)
class QAItem:
    """One question.

    Parameters:
        question: the question as the user says it.
        answers: the gold answers (any one counts).
        line: 1-based line in the data file, so a record points back to its source.
        chunks: knowledge chunks a Reasoner would stream for it (optional).
        answer_sentence: which chunk (1-based) holds the answer, when known.
    """

    question: str
    answers: tuple[str, ...]
    line: int = 0
    chunks: tuple[str, ...] = ()
    answer_sentence: int | None = None


def load_items(path: str | Path) -> list[QAItem]:
    """Read NQ-open JSONL; ConfigError naming the file and line for anything unusable."""
    path = Path(path)
    missing = (f"QA data not found: {path}. Pass --data FILE.jsonl (NQ-open lines "
               '{"question": ..., "answer": [...]}).')
    items = []
    for i, d in read_jsonl(path, ConfigError, missing):
        try:
            q, a = d["question"], d["answer"]
        except (KeyError, TypeError) as e:
            raise ConfigError(f"{path}:{i}: not an NQ-open line ({type(e).__name__}: {e})") from None
        answers = (a,) if isinstance(a, str) else tuple(str(x) for x in a)
        if not str(q).strip() or not answers:
            raise ConfigError(f"{path}:{i}: empty question or no gold answer")
        chunks = _chunk_texts(d.get("chunks"), f"{path}:{i}")
        pos = d.get("answer_sentence")
        items.append(QAItem(str(q), answers, i, chunks, int(pos) if pos is not None else None))
    if not items:
        raise ConfigError(f"{path} has no QA items")
    return items


def _chunk_texts(chunks, where: str) -> tuple[str, ...]:
    """Chunk texts from a line's `chunks`: strings, or replay records `{"t_ms", "text"}` (times ignored)."""
    if chunks is None:
        return ()
    if not isinstance(chunks, list):
        raise ConfigError(f"{where}: chunks must be a list")
    out = []
    for c in chunks:
        text = c.get("text") if isinstance(c, dict) else c
        if not isinstance(text, str) or not text.strip():
            raise ConfigError(f"{where}: every chunk must be a non-empty string (or {{t_ms, text}})")
        out.append(text.strip())
    return tuple(out)


def attach_chunks(items: Sequence[QAItem], path: str | Path) -> list[QAItem]:
    """Give each item the chunks of the line of `path` that has its question (`question` or `user`, case
    and spacing aside): a dev set of realistic chunks, or a replay recording. Items without a line there
    keep what they had; ConfigError when no item matched at all."""
    from dataclasses import replace

    path = Path(path)
    by_q: dict[str, tuple[tuple[str, ...], int | None]] = {}
    for i, d in read_jsonl(path, ConfigError, f"chunks file not found: {path}"):
        q = d.get("question", d.get("user")) if isinstance(d, dict) else None
        if not isinstance(q, str):
            raise ConfigError(f"{path}:{i}: a chunks line needs a question (or user) and chunks")
        by_q[_key(q)] = (_chunk_texts(d.get("chunks"), f"{path}:{i}"), d.get("answer_sentence"))
    out, hits = [], 0
    for it in items:
        hit = by_q.get(_key(it.question))
        if hit:
            hits += 1
            it = replace(it, chunks=hit[0], answer_sentence=hit[1] if hit[1] is not None else it.answer_sentence)
        out.append(it)
    if not hits:
        raise ConfigError(f"none of the questions has chunks in {path}")
    return out


def _key(text: str) -> str:
    return " ".join(text.casefold().split())


def sample_items(items: Sequence[QAItem], n: int | None, seed: int = 0) -> list[QAItem]:
    """`n` items drawn without replacement by `random.Random(seed)`; all of them (shuffled) if n is larger."""
    if n is not None and n < 1:
        raise ConfigError("--n must be at least 1")
    k = len(items) if n is None else min(n, len(items))
    return random.Random(seed).sample(list(items), k)


def oracle_knowledge(item: QAItem) -> str:
    """The knowledge sentence the oracle streams: the first gold answer in a plain sentence."""
    return f"The answer is {item.answers[0].strip().rstrip('.')}."


@dataclass
class QARecord:
    """The outcome of one item (one line of the per-item JSONL)."""

    question: str
    gold: list[str]
    reply: str
    correct: bool
    matched: str | None
    metrics: TurnMetrics
    events: list[Event]
    line: int = 0
    conversation: int = 0
    turn: int = 0
    knowledge: list[str] = field(default_factory=list)
    answer_sentence: int | None = None

    def to_dict(self) -> dict:
        return {"line": self.line, "conversation": self.conversation, "turn": self.turn,
                "question": self.question, "gold": self.gold, "knowledge": self.knowledge,
                "answer_sentence": self.answer_sentence, "reply": self.reply,
                "correct": self.correct, "matched": self.matched, "metrics": self.metrics.to_dict(),
                "events": [e.to_dict() for e in persisted(self.events)]}  # as in the store


@dataclass
class QARun:
    """A finished QA run: its summary (the printed JSON object) and its records."""

    summary: dict
    records: list[QARecord] = field(default_factory=list)


def run_label(mode: str, reasoner: Reasoner | None) -> str:
    """A file-name-safe name for a run, e.g. `convfill-oracle-0.5s`, `reasoner-local`, `talker`."""
    if mode == "talker" or reasoner is None:
        return mode
    d = reasoner.describe()
    delay = d.get("first_chunk_s", d.get("delay_s"))
    return f"{mode}-{reasoner.name}" + (f"-{delay:g}s" if delay else "")


KNOWLEDGE = ("auto", "terse", "chunks")


def item_knowledge(item: QAItem, knowledge: str = "auto") -> list[str]:
    """The chunks the oracle streams for `item`: its own chunks ("chunks", or "auto" when it has some),
    else the terse sentence `oracle_knowledge`."""
    if knowledge not in KNOWLEDGE:
        raise ConfigError(f"knowledge must be one of {', '.join(KNOWLEDGE)}")
    if knowledge == "chunks" and not item.chunks:
        raise ConfigError(f"line {item.line}: no chunks for {item.question!r} (knowledge=chunks)")
    if item.chunks and knowledge != "terse":
        return list(item.chunks)
    return [oracle_knowledge(item)]


def _reasoner_for(reasoner: Reasoner, item: QAItem, knowledge: str = "auto") -> Reasoner:
    if isinstance(reasoner, OracleReasoner):
        chunks = item_knowledge(item, knowledge)
        if len(chunks) == 1 and chunks[0] == oracle_knowledge(item):
            return reasoner.with_knowledge(chunks[0])
        from ..reasoners.replay import ReplayReasoner

        # One chunk per given sentence, at the oracle's profile (first after first_chunk_s, then gap_s each).
        times = [1000.0 * (reasoner.first_chunk_s + i * reasoner.gap_s) for i in range(len(chunks))]
        return ReplayReasoner([{"user": item.question, "chunks": list(zip(times, chunks))}], in_order=True,
                              clock=reasoner.clock)
    return reasoner


def _record(item: QAItem, events: list[Event], conversation: int = 0, turn: int = 0,
            knowledge: list[str] | None = None) -> QARecord:
    end = next(e for e in reversed(events) if isinstance(e, TurnEnded))
    m = match_answers(end.reply, item.answers)
    return QARecord(item.question, list(item.answers), end.reply, m.correct, m.matched, turn_metrics(events),
                    events, item.line, conversation, turn, knowledge or [], item.answer_sentence)


async def run_item(item: QAItem, mode: str, talker: Talker | None, reasoner: Reasoner | None,
                   config: EngineConfig | None = None, clock: Clock | None = None,
                   knowledge: str = "auto") -> QARecord:
    """Run one question in `mode` (a fresh conversation) and score what was said."""
    return (await run_conversation([item], mode, talker, reasoner, config, clock, knowledge))[0]


async def run_conversation(items: Sequence[QAItem], mode: str, talker: Talker | None, reasoner: Reasoner | None,
                           config: EngineConfig | None = None, clock: Clock | None = None,
                           knowledge: str = "auto", conversation: int = 0) -> list[QARecord]:
    """Ask `items` one after another in one conversation (one `Engine`: the Talker sees the previous turn)."""
    config = config or EngineConfig()
    engine = Engine(talker, None, config, clock=clock) if mode != "reasoner" else None
    records = []
    for ti, item in enumerate(items):
        said = item_knowledge(item, knowledge) if isinstance(reasoner, OracleReasoner) else None
        if mode == "reasoner":
            events = await reasoner_turn(_reasoner_for(reasoner, item, knowledge), item.question, clock,
                                         config.turn_timeout_s)
        else:
            engine.reasoner = _reasoner_for(reasoner, item, knowledge) if mode == "convfill" else None
            events = [ev async for ev in engine.turn(item.question)]
        records.append(_record(item, events, conversation, ti, said if mode != "talker" else None))
    return records


def _check(mode: str, talker: Talker | None, reasoner: Reasoner | None) -> None:
    if mode not in MODES:
        raise ConfigError(f"Unknown mode {mode!r}; use one of {', '.join(MODES)}")
    if mode in ("convfill", "talker") and talker is None:
        raise ConfigError(f"mode {mode} needs a Talker")
    if mode in ("convfill", "reasoner") and reasoner is None:
        raise ConfigError(f"mode {mode} needs a Reasoner")


def summarize_records(records: Sequence[QARecord]) -> dict:
    """Accuracy and latency summary of a run; every latency goes through `metrics.summarize`."""
    n = len(records)
    correct = sum(r.correct for r in records)
    out: dict = {"n": n, "correct": correct, "accuracy": round(correct / n, 4) if n else None}
    ms = [r.metrics for r in records]
    for key, values in (("ttft_ms", [m.talker_ttft_ms for m in ms]),
                        ("first_knowledge_phrase_ms", [m.first_knowledge_phrase_ms for m in ms]),
                        ("reasoner_first_chunk_ms", [m.reasoner_first_chunk_ms for m in ms]),
                        ("total_ms", [m.total_ms for m in ms])):
        s = summarize(values)
        for stat in ("p50", "p95", "mean", "std"):
            v = s[stat]
            out[f"{key}_{stat}"] = round(v, 1) if v is not None else None
    out["fillers_mean"] = round(sum(m.n_fillers for m in ms) / n, 3) if n else None
    out["end_reasons"] = dict(Counter(m.end_reason for m in ms))
    by_pos: dict[int, list[bool]] = {}
    for r in records:
        if r.answer_sentence is not None and len(r.knowledge) > 1:
            by_pos.setdefault(r.answer_sentence, []).append(r.correct)
    if by_pos:
        out["accuracy_by_answer_sentence"] = {str(k): {"n": len(v), "accuracy": round(sum(v) / len(v), 4)}
                                              for k, v in sorted(by_pos.items())}
    return out


def conversations_of(records: Sequence[QARecord]) -> list[list]:
    """The run's conversations as `naturalness.SpokenTurn` lists, in order."""
    from .naturalness import turn_from_events

    convs: dict[int, list] = {}
    for r in records:
        convs.setdefault(r.conversation, []).append(turn_from_events(r.events, r.question))
    return [convs[k] for k in sorted(convs)]


async def arun_qa(items: Sequence[QAItem], mode: str, talker: Talker | None = None,
                  reasoner: Reasoner | None = None, config: EngineConfig | None = None,
                  clock: Clock | None = None, out_dir: str | Path | None = None, label: str | None = None,
                  progress: bool = True, knowledge: str = "auto", turns_per_conversation: int = 1) -> QARun:
    """Run `items` in `mode`; with `out_dir`, write `qa_<label>.jsonl` (per item) and `.summary.json`.

    Items run one after another: they share the CPU with the Talker, and overlapping them would distort
    every latency being measured. `turns_per_conversation` consecutive items share one conversation; the
    summary's `naturalness` (Talker modes) is measured over those conversations.
    """
    if turns_per_conversation < 1:
        raise ConfigError("--turns-per-conversation must be at least 1")
    from tqdm import tqdm

    _check(mode, talker, reasoner)
    label = label or run_label(mode, reasoner)
    t_start = time.perf_counter()
    records: list[QARecord] = []
    out = Path(out_dir) if out_dir else None
    if out:
        out.mkdir(parents=True, exist_ok=True)
    items_path = out / f"qa_{label}.jsonl" if out else None
    fh = items_path.open("w", encoding="utf-8") if items_path else None
    try:
        with tqdm(total=len(items), desc=label, file=sys.stderr, disable=not progress, unit="q") as bar:
            k = turns_per_conversation
            for ci, start in enumerate(range(0, len(items), k)):
                for rec in await run_conversation(items[start:start + k], mode, talker, reasoner, config, clock,
                                                  knowledge, ci):
                    records.append(rec)
                    if fh:
                        fh.write(json.dumps(rec.to_dict(), ensure_ascii=False) + "\n")
                        fh.flush()  # a long run interrupted half-way keeps what it measured
                    bar.update(1)
                bar.set_postfix(acc=f"{sum(r.correct for r in records) / len(records):.2f}")
    finally:
        if fh:
            fh.close()
    summary = {"label": label, "mode": mode,
               "talker": talker.describe() if talker and mode != "reasoner" else None,
               "reasoner": reasoner.describe() if reasoner and mode != "talker" else None,
               "knowledge": knowledge, "turns_per_conversation": turns_per_conversation,
               **summarize_records(records), "wall_s": round(time.perf_counter() - t_start, 1)}
    if mode != "reasoner" and records:
        from .naturalness import summarize_naturalness

        summary["naturalness"] = summarize_naturalness(conversations_of(records))
    if out:
        summary["items_file"] = str(items_path)
        (out / f"qa_{label}.summary.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    return QARun(summary, records)

