"""Talker quality rules on held-out ConvFill turns: the teacher-forced phrase slots, and the scores of a phrase.

The data half of `convfill.eval.talker` (which replays the slots through a Talker): reading the held-out
conversations, cutting them into slots, splitting a corpus, and scoring one phrase with the word rules of
`training.rules` (the same ones that filter the training data; `naturalness` scores engine fillers with
`score_filler` too). Scoring needs no model, so `rescore` applies changed rules to a stored run.

  knowledge_retention        per knowledge phrase, the share of its chunk's key facts it says: numbers
                             (digits and number words normalised, "9" == "nine"), names (capitalised, not
                             sentence-initial) and content words (stemmed, stopwords removed); mean over
                             phrases whose chunk has any key fact.
  knowledge_all_names_numbers  share of knowledge phrases (whose chunk has a name or number) that say every
                             name and number of the chunk: the facts a listener cannot do without.
  filler_hallucination       share of `<sil>` phrases that state facts the Talker could not know: a name or
                             number absent from the user turn, previous turn and earlier phrases, or at least
                             `leak_min` content words that only this turn's (still unseen) knowledge holds,
                             i.e. a guessed answer. A single shared word is common in good fillers ("where it
                             happens"), hence the threshold.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from training.rules import content_words, leaked_words, names, new_names, numbers, stem

from ..conversations import is_sil, validate
from ..errors import ConfigError, ConvFillError
from ..jsonl import read_jsonl
from ..prompt import PhraseContext
from ..splits import split as hash_split

LEAK_MIN = 2


class EvalDataError(ConvFillError):
    """The evaluation data is missing or malformed; the message names file and line."""


# ------------------------------------------------------------------------------------------------ data
def load_eval_conversations(paths: Iterable[str | Path]) -> list[dict]:
    """ConvFill conversations from JSONL files, checked by `convfill.conversations` (file:line on error).

    The objects are returned whole (a `domain` tag included): the held-out split hashes them, so dropping
    a key would move conversations between train and held-out.
    """
    out = []
    for path in paths:
        for n, obj in read_jsonl(path, EvalDataError, f"evaluation data not found: {path}"):
            validate(obj, f"{path}:{n}", EvalDataError)
            out.append(obj)
    if not out:
        raise EvalDataError("no conversations in the evaluation data")
    return out


@dataclass(frozen=True)
class Slot:
    """One phrase to replay: its teacher-forced context, the gold phrase, and the turn's upcoming chunks."""

    conversation: int
    turn: int
    slot: int
    context: PhraseContext
    gold: str
    upcoming: tuple[str, ...]  # knowledge chunks of this turn from this slot on (unseen by a filler)

    @property
    def kind(self) -> str:
        return "filler" if self.context.knowledge is None else "knowledge"


def turn_slots(conversations: Sequence[dict]) -> list[list[Slot]]:
    """Per turn, its slots in speaking order, with gold earlier phrases and the gold previous turn."""
    turns = []
    for ci, conv in enumerate(conversations):
        prev_user = prev_reply = None
        for ti, t in enumerate(conv["conversation"]):
            slots = []
            for si, (thought, gold) in enumerate(zip(t["thoughts"], t["response"])):
                ctx = PhraseContext(user=t["user"], knowledge=None if is_sil(thought) else thought,
                                    earlier=tuple(t["response"][:si]), prev_user=prev_user, prev_reply=prev_reply)
                upcoming = tuple(x for x in t["thoughts"][si:] if not is_sil(x))
                slots.append(Slot(ci, ti, si, ctx, gold, upcoming))
            if slots:
                turns.append(slots)
            prev_user, prev_reply = t["user"], " ".join(t["response"])
    return turns


# --------------------------------------------------------------------------------------------- scoring
@dataclass(frozen=True)
class Facts:
    """The key facts of a knowledge chunk."""

    numbers: frozenset[str]
    names: frozenset[str]   # lower-cased
    words: frozenset[str]   # stems of content words that are neither names nor numbers

    @property
    def total(self) -> int:
        return len(self.numbers) + len(self.names) + len(self.words)


def key_facts(chunk: str) -> Facts:
    nums = frozenset(numbers(chunk))
    nms = frozenset(n.lower() for n in names(chunk, quotes=True))
    name_stems = {stem(n) for n in nms}
    num_words = {stem(w) for w in content_words(chunk) if numbers(w)}
    words = frozenset(content_words(chunk) - name_stems - num_words)
    return Facts(nums, nms, words)


def score_knowledge(chunk: str, phrase: str, visible: str = "") -> dict:
    """Retention of `chunk`'s key facts in `phrase`, which ones went missing, and which names or numbers
    the phrase adds that neither the chunk nor the `visible` context holds (a knowledge phrase should say
    its chunk's meaning and nothing new)."""
    f = key_facts(chunk)
    said_nums, said_words = numbers(phrase), content_words(phrase)
    lower = phrase.lower()
    miss_nums = sorted(f.numbers - said_nums)
    miss_names = sorted(n for n in f.names if n not in lower)
    miss_words = sorted(f.words - said_words)
    kept = f.total - len(miss_nums) - len(miss_names) - len(miss_words)
    has_nn = bool(f.numbers or f.names)
    known = chunk + " " + visible
    added = sorted(new_names(phrase, known, quotes=True)) + sorted(said_nums - numbers(known))
    return {
        "n_facts": f.total,
        "retention": round(kept / f.total, 4) if f.total else None,
        "all_names_numbers": (not miss_nums and not miss_names) if has_nn else None,
        "missing": {"numbers": miss_nums, "names": miss_names, "words": miss_words},
        "added_names_numbers": added,
    }


def visible_text(ctx: PhraseContext) -> str:
    """Everything a Talker could know when it speaks this phrase, without the knowledge block."""
    return " ".join(x for x in (ctx.prev_user, ctx.prev_reply, ctx.user, *ctx.earlier) if x)


def score_filler(phrase: str, ctx: PhraseContext, upcoming: Sequence[str] = (), leak_min: int = LEAK_MIN) -> dict:
    """Does a `<sil>` phrase state facts the Talker could not know? (the rules of `training.generate`)"""
    visible = visible_text(ctx)
    unseen_names = sorted(new_names(phrase, visible, quotes=True))
    unseen_numbers = sorted(numbers(phrase) - numbers(visible))
    leaked = sorted(leaked_words(phrase, visible, list(upcoming)))
    guessed = len(leaked) >= leak_min
    return {"hallucinated": bool(unseen_names or unseen_numbers or guessed), "new_names": unseen_names,
            "new_numbers": unseen_numbers, "guessed_knowledge": guessed, "leaked_words": leaked}


def score_phrase(slot: Slot, phrase: str, leak_min: int = LEAK_MIN) -> dict:
    if slot.context.knowledge is None:
        return score_filler(phrase, slot.context, slot.upcoming, leak_min)
    return score_knowledge(slot.context.knowledge, phrase, visible_text(slot.context))


def _mean(xs: list[float]) -> float | None:
    return round(sum(xs) / len(xs), 4) if xs else None


def _share(flags: list[bool]) -> float | None:
    return round(sum(flags) / len(flags), 4) if flags else None


def aggregate(items: Sequence[dict], key: str = "scores") -> dict:
    """The headline numbers over scored items (`key` selects generated or gold scores)."""
    know = [it[key] for it in items if it["kind"] == "knowledge"]
    fill = [it[key] for it in items if it["kind"] == "filler"]
    return {
        "knowledge_retention": _mean([s["retention"] for s in know if s["retention"] is not None]),
        "knowledge_all_names_numbers": _share([s["all_names_numbers"] for s in know
                                                if s["all_names_numbers"] is not None]),
        "n_knowledge_with_names_numbers": sum(1 for s in know if s["all_names_numbers"] is not None),
        "knowledge_adds_names_numbers": _share([bool(s["added_names_numbers"]) for s in know]),
        "filler_hallucination": _share([s["hallucinated"] for s in fill]),
        "filler_new_names": _share([bool(s["new_names"]) for s in fill]),
        "filler_new_numbers": _share([bool(s["new_numbers"]) for s in fill]),
        "filler_knowledge_leak": _share([s["guessed_knowledge"] for s in fill]),
    }


def rescore(data: Sequence[str], items: Sequence[dict], leak_min: int = LEAK_MIN) -> list[dict]:
    """Score stored generations again with the current rules (no model run): items of a run on `data`."""
    slots = {(s.conversation, s.turn, s.slot): s for t in turn_slots(load_eval_conversations(data)) for s in t}
    out = []
    for it in items:
        s = slots.get((it["conversation"], it["turn"], it["slot"]))
        if s is None or s.gold != it["gold"]:
            raise EvalDataError(f"item {it['conversation']}/{it['turn']}/{it['slot']} does not match the data")
        out.append({**it, "scores": score_phrase(s, it["generated"], leak_min), "gold_scores": score_phrase(s, s.gold, leak_min)})
    return out


# ----------------------------------------------------------------------------------------------- split
def heldout_split(convs: Sequence[dict], heldout: float, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """(train, heldout), both in input order, by the seeded content hash of `convfill.splits` (the corpus
    validator's and the NLI pairs' too), so every tool holds out the same conversations."""
    if not 0 <= heldout < 1:
        raise ConfigError(f"--heldout must be in [0, 1), got {heldout}")
    if heldout == 0:
        return list(convs), []
    return hash_split(list(convs), seed, heldout)


def write_file_splits(data: Sequence[str], out_dir: str | Path, heldout: float, seed: int) -> dict:
    """Split each file on its own and concatenate, so a file's held-out conversations are the same whether
    it is split alone or with others (evaluating on part B's held-out never touches training data of an
    A+B split)."""
    train, held = [], []
    for path in data:
        tr, he = heldout_split(load_eval_conversations([path]), heldout, seed)
        train += tr
        held += he
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train.jsonl", train), ("heldout.jsonl", held)):
        (out / name).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return {"train": len(train), "heldout": len(held), "out_dir": str(out), "seed": seed, "fraction": heldout,
            "train_turns": sum(len(c["conversation"]) for c in train),
            "heldout_turns": sum(len(c["conversation"]) for c in held)}
