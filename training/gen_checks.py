"""The generator's checks: each answer of the Reasoner is parsed and checked before it becomes training data.

structure, spoken, diversity, visibility, new_facts and nli (see `training.generate`); each failure is a
`Rejection` with its reason, recorded in the run's rejects file. `to_convfill` turns an accepted answer into
the shared ConvFill conversation format.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from convfill.errors import ConvFillError
from convfill.nli import premise_for
from convfill.prompt import SIL, sanitize

from .gen_scaffold import Spec
from .rules import leaked_words, new_names


@dataclass(frozen=True)
class Rejection:
    """Why (part of) a conversation was rejected."""

    validator: str
    detail: str
    turn: int | None = None
    slot: int | None = None


class ParseError(ConvFillError):
    pass


def parse_response(text: str) -> dict:
    """The JSON object in a model answer (code fences and chatter around it are tolerated)."""
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        raise ParseError("no JSON object found")
    try:
        obj = json.loads(text[start:end + 1])
    except json.JSONDecodeError as e:
        raise ParseError(f"invalid JSON ({e.msg} at char {e.pos})") from None
    if not isinstance(obj, dict):
        raise ParseError("the answer is not a JSON object")
    return obj


def check_structure(obj: dict, spec: Spec) -> list[Rejection]:
    turns = obj.get("turns")
    if not isinstance(turns, list) or len(turns) != len(spec.schedule):
        return [Rejection("structure", f"expected {len(spec.schedule)} turns, got "
                                       f"{len(turns) if isinstance(turns, list) else type(turns).__name__}")]
    out = []
    for ti, (turn, slots) in enumerate(zip(turns, spec.schedule)):
        if not isinstance(turn, dict) or not _text(turn.get("user")):
            out.append(Rejection("structure", "missing user text", ti))
            continue
        got = turn.get("slots")
        if not isinstance(got, list) or [s.get("type") if isinstance(s, dict) else None for s in got] != list(slots):
            out.append(Rejection("structure", f"slots do not follow the schedule {list(slots)}", ti))
            continue
        for si, s in enumerate(got):
            keys = ("phrase",) if s["type"] == "sil" else ("chunk", "phrase")
            for k in keys:
                if not _text(s.get(k)):
                    out.append(Rejection("structure", f"empty {k}", ti, si))
    return out


def _text(v: Any) -> bool:
    return isinstance(v, str) and v.strip() not in ("", "...")


_NOT_SPOKEN = [
    (re.compile(r"\d"), "digits (numbers must be words)"),
    (re.compile(r"[*_#`|]|^\s*[-\u2022]\s", re.M), "markdown or list markup"),
    (re.compile(r"https?://|www\.", re.I), "a URL"),
    (re.compile("[\U0001F300-\U0001FAFF\u2600-\u27BF]"), "an emoji"),
]


def check_spoken(obj: dict) -> list[Rejection]:
    out = []
    for ti, si, kind, text in _texts(obj):
        if sanitize(text) != re.sub(r"\s+", " ", text).strip():
            out.append(Rejection("spoken", f"{kind} holds control tokens", ti, si))
            continue
        for rx, what in _NOT_SPOKEN:
            if rx.search(text):
                out.append(Rejection("spoken", f"{kind} contains {what}: {text[:60]!r}", ti, si))
                break
    return out


def _texts(obj: dict):
    for ti, turn in enumerate(obj["turns"]):
        yield ti, None, "user", turn["user"]
        for si, s in enumerate(turn["slots"]):
            if s["type"] == "knowledge":
                yield ti, si, "chunk", s["chunk"]
            yield ti, si, "phrase", s["phrase"]


def _norm(text: str) -> str:
    return re.sub(r"[^a-z' ]+", "", text.lower()).strip()


def check_diversity(obj: dict, max_uses: int = 2) -> list[Rejection]:
    counts = Counter(_norm(s["phrase"]) for t in obj["turns"] for s in t["slots"])
    return [Rejection("diversity", f"phrase used {c} times: {p[:60]!r}") for p, c in counts.items() if c > max_uses]


def check_fillers(obj: dict) -> list[Rejection]:
    """Visibility and new-facts rules for `<sil>` phrases."""
    out = []
    prev_text = ""
    for ti, turn in enumerate(obj["turns"]):
        visible = prev_text + " " + turn["user"]
        slots = turn["slots"]
        for si, s in enumerate(slots):
            if s["type"] == "sil":
                upcoming = [x["chunk"] for x in slots[si:] if x["type"] == "knowledge"]
                leaked = leaked_words(s["phrase"], visible, upcoming)
                if leaked:
                    out.append(Rejection("visibility", f"filler uses upcoming knowledge: {sorted(leaked)}", ti, si))
                unseen = new_names(s["phrase"], visible)
                if unseen:
                    out.append(Rejection("new_facts", f"filler names {sorted(unseen)} not in the context",
                                         ti, si))
            visible += " " + s["phrase"]
        prev_text = turn["user"] + " " + " ".join(s["phrase"] for s in slots)
    return out


class Judge(Protocol):
    """Anything with `predict(premises, hypotheses)` returning items with a `probs` dict
    (entailment/neutral/contradiction), e.g. `convfill.nli.judge.NLIJudge`."""

    def predict(self, premises: Sequence[str], hypotheses: Sequence[str]) -> list: ...


def check_nli(obj: dict, judge: Judge, max_contradiction: float, min_entailment: float) -> list[Rejection]:
    """The NLI gate, with the workbench's premise rule (`convfill.nli.premise_for`): a knowledge phrase is
    judged against its chunk followed by the earlier phrases of the turn, a filler against the user turn
    followed by them; so data passes the gate exactly when the workbench would call it entailed."""
    pairs, where = [], []
    for ti, turn in enumerate(obj["turns"]):
        earlier: list[str] = []
        for si, s in enumerate(turn["slots"]):
            knowledge = s["chunk"] if s["type"] == "knowledge" else None
            pairs.append(premise_for(s["phrase"], user=turn["user"], knowledge=knowledge, earlier=earlier))
            where.append((ti, si, "filler" if knowledge is None else "knowledge"))
            earlier.append(s["phrase"])
    if not pairs:
        return []
    preds = judge.predict([p.premise for p in pairs], [p.hypothesis for p in pairs])
    out = []
    for (ti, si, kind), pred in zip(where, preds):
        probs = {k.lower(): float(v) for k, v in _probs(pred).items()}
        c, e = probs.get("contradiction", 0.0), probs.get("entailment", 0.0)
        if c > max_contradiction:
            out.append(Rejection("nli", f"{kind} contradicts its premise (P={c:.2f})", ti, si))
        elif kind == "knowledge" and e < min_entailment:
            out.append(Rejection("nli", f"knowledge phrase not entailed by its chunk (P={e:.2f})", ti, si))
    return out


def _probs(pred: Any) -> dict:
    return pred["probs"] if isinstance(pred, dict) else pred.probs


def check_generated(obj: dict, spec: Spec, judge: Judge | None, max_contradiction: float,
                    min_entailment: float) -> list[Rejection]:
    """Every check of a generated conversation, in order; the rejections (none: accept it). Later checks
    only run on a structurally valid conversation, the NLI gate only on one that passed all others."""
    bad = check_structure(obj, spec)
    if bad:
        return bad
    bad = check_spoken(obj) + check_diversity(obj) + check_fillers(obj)
    if not bad and judge is not None:
        bad = check_nli(obj, judge, max_contradiction, min_entailment)
    return bad


def to_convfill(obj: dict, spec: Spec) -> dict:
    """The shared ConvFill conversation format (plus `id` and `domain` for provenance)."""
    conv = []
    for turn in obj["turns"]:
        conv.append({"user": turn["user"].strip(),
                     "thoughts": [SIL if s["type"] == "sil" else s["chunk"].strip() for s in turn["slots"]],
                     "response": [s["phrase"].strip() for s in turn["slots"]]})
    return {"id": spec.id, "domain": spec.domain, "conversation": conv}
