"""Talker quality on held-out ConvFill turns: does a Talker keep the knowledge, and do its fillers invent?

Owns the measurement of issue 9 (prompted base vs trained Talker). Every phrase slot of a held-out turn is
replayed with teacher forcing: the Talker gets exactly the context the engine would build if all earlier
phrases had been the gold ones (`PhraseContext(user, chunk or None, earlier = gold phrases before this slot,
prev_user / prev_reply = the gold previous turn)`) and speaks greedily through its real `stream()`. Teacher
forcing scores each phrase on its own, so one bad phrase does not drag the rest of the turn with it, and two
Talkers are compared on identical inputs.

Scores (word rules from `training.rules`, the same ones that filter the training data):
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
  ttft_ms                    time to the first streamed piece of each phrase (after the engine's warm-up of
                             the previous turn, as in the app), via `convfill.metrics.summarize`.
The same scores of the gold phrases are reported as `reference_gold`: the ceiling of the rules, and a check
that they do not flag good data.

    python -m training.talker_eval --data heldout.jsonl --json
    python -m training.talker_eval --data heldout.jsonl --lora talker.gguf --style convfill --out items.jsonl
    python -m training.talker_eval split --data part_a.jsonl part_b.jsonl --heldout 0.1 --seed 0 --out-dir d
    python -m training.talker_eval rescore --data heldout.jsonl --items items.jsonl   # rules changed
    python -m training.talker_eval compare --data heldout.jsonl --config base=style=prompted \\
        --config trained=lora=talker.gguf,style=convfill
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from convfill.conversations import is_sil, validate
from convfill.errors import ConfigError, ConvFillError
from convfill.jsonl import read_jsonl
from convfill.metrics import summarize
from convfill.prompt import PhraseContext, sanitize

from .rules import content_words, leaked_words, names, new_names, numbers, stem
from convfill.splits import split as hash_split

LEAK_MIN = 2
MAX_PHRASE_TOKENS = 48  # = EngineConfig.max_phrase_tokens default


class EvalDataError(ConvFillError):
    """The evaluation data is missing or malformed; the message names file and line."""


# ------------------------------------------------------------------------------------------------ data
def load_conversations(paths: Iterable[str | Path]) -> list[dict]:
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


def score(slot: Slot, phrase: str, leak_min: int = LEAK_MIN) -> dict:
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


# --------------------------------------------------------------------------------------------- running
class GoldTalker:
    """Says the gold phrase of each slot (instantly): the reference row of a comparison."""

    runtime = "gold"

    def __init__(self, turns: Sequence[Sequence[Slot]]):
        self._gold = {s.context: s.gold for t in turns for s in t}

    async def stream(self, ctx: PhraseContext, max_tokens: int = MAX_PHRASE_TOKENS):
        yield self._gold[ctx]

    async def warm(self, ctx: PhraseContext) -> None:
        return None

    def describe(self) -> dict:
        return {"runtime": "gold", "model": "gold phrases"}

    def close(self) -> None:
        return None


@dataclass
class TalkerSpec:
    """How to build the Talker under test (the CLI flags, also the `compare` config syntax)."""

    talker: str = "llamacpp"        # llamacpp | transformers | gold
    model: str | None = None        # GGUF path (llamacpp) or HF dir / GGUF (transformers); None = shipped base
    lora: str | None = None         # GGUF LoRA adapter (llamacpp only)
    style: str | None = None        # convfill | prompted; None = the runtime's default for the model
    seed: int = 0
    threads: int | None = None      # llama.cpp CPU threads (None = its default)

    @classmethod
    def parse(cls, text: str, seed: int = 0, threads: int | None = None) -> TalkerSpec:
        """`talker=llamacpp,lora=a.gguf,style=convfill` (keys: talker, model, lora, style)."""
        spec = cls(seed=seed, threads=threads)
        for part in filter(None, (p.strip() for p in text.split(","))):
            key, sep, value = part.partition("=")
            if not sep or key not in ("talker", "model", "lora", "style"):
                raise ConfigError(f"bad Talker config item {part!r}: use talker=, model=, lora=, style=")
            setattr(spec, key, value or None)
        return spec

    def build(self, turns: Sequence[Sequence[Slot]]):
        if self.talker == "gold":
            return GoldTalker(turns)
        if self.talker not in ("llamacpp", "transformers"):
            raise ConfigError(f"unknown Talker runtime {self.talker!r}: use llamacpp, transformers or gold")
        from convfill.talkers import get_talker
        from convfill.talkers.llamacpp import resolve_adapter

        opts: dict[str, Any] = {"style": self.style, "temperature": 0.0, "seed": self.seed}
        if self.threads and self.talker == "llamacpp":
            opts["n_threads"] = self.threads
        if self.talker == "llamacpp":
            # Explicit: no --lora means the bare model ("none"); "seed" is the shipped seed adapter.
            opts["lora_path"] = self.lora or "none"
        if self.lora:
            if self.talker != "llamacpp":
                raise ConfigError("--lora needs the llamacpp runtime (merge the adapter for transformers)")
            adapter = resolve_adapter(self.lora, self.model)  # "seed"/"none"/"auto" or a path
            if adapter is not None and not adapter.is_file():
                raise ConfigError(f"LoRA adapter not found: {self.lora}")
        return get_talker(self.talker, self.model, **opts)


async def run_turns(talker, turns: Sequence[Sequence[Slot]], max_tokens: int = MAX_PHRASE_TOKENS,
                    warm: bool = True, leak_min: int = LEAK_MIN, progress: bool = False) -> list[dict]:
    """Replay every slot through `talker.stream()` and score it; one dict per phrase."""
    items = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=sum(len(t) for t in turns), desc="phrases", file=sys.stderr)
    for slots in turns:
        first = slots[0].context
        if warm and first.prev_user:
            # The engine pre-fills the previous turn while the user reads; do the same, untimed.
            await talker.warm(PhraseContext("", prev_user=first.prev_user, prev_reply=first.prev_reply))
        for s in slots:
            pieces: list[str] = []
            ttft = None
            t0 = time.perf_counter()
            async for piece in talker.stream(s.context, max_tokens):
                if ttft is None and piece.strip():
                    ttft = (time.perf_counter() - t0) * 1000.0
                pieces.append(piece)
            total_ms = (time.perf_counter() - t0) * 1000.0
            text = sanitize("".join(pieces))
            ctx = s.context
            items.append({
                "conversation": s.conversation, "turn": s.turn, "slot": s.slot, "kind": s.kind,
                "context": {"user": ctx.user, "knowledge": ctx.knowledge, "earlier": list(ctx.earlier),
                            "prev_user": ctx.prev_user, "prev_reply": ctx.prev_reply},
                "gold": s.gold, "generated": text,
                "ttft_ms": round(ttft, 3) if ttft is not None else None, "phrase_ms": round(total_ms, 3),
                "scores": score(s, text, leak_min), "gold_scores": score(s, s.gold, leak_min),
            })
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    return items


def select_turns(turns: list[list[Slot]], limit: int | None, seed: int) -> list[list[Slot]]:
    """All turns, or a seeded sample of `limit` of them kept in corpus order."""
    if not limit or limit >= len(turns):
        return turns
    keep = sorted(random.Random(seed).sample(range(len(turns)), limit))
    return [turns[i] for i in keep]


def report(items: Sequence[dict], talker_desc: dict | None = None, **extra) -> dict:
    """The summary of one run: counts, scores of generated and gold phrases, TTFT."""
    ttft = summarize([it["ttft_ms"] for it in items])
    return {
        "talker": talker_desc or {},
        "n_turns": len({(it["conversation"], it["turn"]) for it in items}),
        "n_knowledge": sum(1 for it in items if it["kind"] == "knowledge"),
        "n_fillers": sum(1 for it in items if it["kind"] == "filler"),
        "n_empty": sum(1 for it in items if not it["generated"]),
        "words_per_phrase": _mean([len(it["generated"].split()) for it in items]),
        **aggregate(items),
        "ttft_ms_p50": ttft["p50"], "ttft_ms_p95": ttft["p95"], "ttft_ms": ttft,
        "phrase_ms": summarize([it["phrase_ms"] for it in items]),
        "reference_gold": {**aggregate(items, "gold_scores"),
                           "words_per_phrase": _mean([len(it["gold"].split()) for it in items])},
        **extra,
    }


def evaluate(spec: TalkerSpec, data: Sequence[str], limit: int | None = None, max_tokens: int = MAX_PHRASE_TOKENS,
             warm: bool = True, leak_min: int = LEAK_MIN, progress: bool = False) -> tuple[dict, list[dict]]:
    """Load the data and the Talker, replay, score: (summary, items)."""
    turns = select_turns(turn_slots(load_conversations(data)), limit, spec.seed)
    t0 = time.perf_counter()
    talker = spec.build(turns)
    load_s = time.perf_counter() - t0
    try:
        t0 = time.perf_counter()
        items = asyncio.run(run_turns(talker, turns, max_tokens, warm, leak_min, progress))
        run_s = time.perf_counter() - t0
    finally:
        talker.close()
    summary = report(items, talker.describe(), data=[str(d) for d in data], limit=limit, seed=spec.seed,
                     threads=spec.threads,
                     load_s=round(load_s, 2), run_s=round(run_s, 2))
    return summary, items


def rescore(data: Sequence[str], items: Sequence[dict], leak_min: int = LEAK_MIN) -> list[dict]:
    """Score stored generations again with the current rules (no model run): items of a run on `data`."""
    slots = {(s.conversation, s.turn, s.slot): s for t in turn_slots(load_conversations(data)) for s in t}
    out = []
    for it in items:
        s = slots.get((it["conversation"], it["turn"], it["slot"]))
        if s is None or s.gold != it["gold"]:
            raise EvalDataError(f"item {it['conversation']}/{it['turn']}/{it['slot']} does not match the data")
        out.append({**it, "scores": score(s, it["generated"], leak_min), "gold_scores": score(s, s.gold, leak_min)})
    return out


# ----------------------------------------------------------------------------------------------- split
def split_conversations(convs: Sequence[dict], heldout: float, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """(train, heldout), both in input order, by the corpus validator's seeded content hash
    (`training.validate_corpus.split`), so both tools hold out the same conversations."""
    if not 0 <= heldout < 1:
        raise ConfigError(f"--heldout must be in [0, 1), got {heldout}")
    if heldout == 0:
        return list(convs), []
    return hash_split(list(convs), seed, heldout)


def write_split(data: Sequence[str], out_dir: str | Path, heldout: float, seed: int) -> dict:
    """Split each file on its own and concatenate, so a file's held-out conversations are the same whether
    it is split alone or with others (evaluating on part B's held-out never touches training data of an
    A+B split)."""
    train, held = [], []
    for path in data:
        tr, he = split_conversations(load_conversations([path]), heldout, seed)
        train += tr
        held += he
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train.jsonl", train), ("heldout.jsonl", held)):
        (out / name).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return {"train": len(train), "heldout": len(held), "out_dir": str(out), "seed": seed, "fraction": heldout,
            "train_turns": sum(len(c["conversation"]) for c in train),
            "heldout_turns": sum(len(c["conversation"]) for c in held)}


# -------------------------------------------------------------------------------------------- tables
TABLE_ROWS = [
    ("n_turns", "turns"), ("n_knowledge", "knowledge phrases"), ("n_fillers", "filler phrases"),
    ("knowledge_retention", "knowledge retention (key facts kept) ↑"),
    ("knowledge_all_names_numbers", "knowledge phrases with all names+numbers ↑"),
    ("knowledge_adds_names_numbers", "knowledge phrases adding names/numbers ↓"),
    ("filler_hallucination", "filler hallucination (states facts) ↓"),
    ("filler_new_names", "  fillers with new names ↓"), ("filler_new_numbers", "  fillers with new numbers ↓"),
    ("filler_knowledge_leak", f"  fillers guessing the knowledge (>= {LEAK_MIN} words) ↓"),
    ("n_empty", "empty phrases"), ("words_per_phrase", "words per phrase"), ("ttft_ms_p50", "TTFT p50 (ms)"), ("ttft_ms_p95", "TTFT p95 (ms)"),
]


def _cell(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.1f}" if v >= 10 else f"{v:.3f}"
    return str(v)


def markdown_table(results: dict[str, dict], gold: bool = True) -> str:
    """Rows: metrics; columns: the configs (and the gold phrases' scores as a reference column)."""
    cols = list(results)
    ref = next(iter(results.values()))["reference_gold"] if gold and results else None
    head = ["metric", *cols] + (["gold phrases (reference)"] if ref else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, label in TABLE_ROWS:
        row = [label, *(_cell(results[c].get(key)) for c in cols)]
        if ref:
            row.append(_cell(ref.get(key)) if key in ref else "")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------- CLI
def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", nargs="+", required=True, help="held-out ConvFill JSONL file(s)")
    p.add_argument("--limit", type=int, default=None, help="evaluate a seeded sample of N turns")
    p.add_argument("--seed", type=int, default=0, help="seed of the turn sample and the Talker")
    p.add_argument("--max-tokens", type=int, default=MAX_PHRASE_TOKENS, help="token cap per phrase")
    p.add_argument("--no-warm", action="store_true",
                   help="do not pre-fill the previous turn before a turn (the engine does; TTFT then includes it)")
    p.add_argument("--leak-min", type=int, default=LEAK_MIN,
                   help="knowledge words a filler must share to count as a guessed answer")
    p.add_argument("--threads", type=int, default=None,
                   help="llama.cpp CPU threads (default: the runtime's; 1 is faster on an overloaded machine)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--progress", action="store_true", help="progress bar on stderr")


def _run_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.talker_eval",
                                description="Measure a Talker on held-out ConvFill turns (teacher-forced). "
                                            "Subcommands: split, compare, rescore (see --help of each).")
    _common(p)
    p.add_argument("--talker", default="llamacpp", choices=["llamacpp", "transformers", "gold"])
    p.add_argument("--talker-model", default=None, help="GGUF (llamacpp) or HF dir/GGUF (transformers)")
    p.add_argument("--lora", default=None, help="GGUF LoRA adapter on the model (llamacpp)")
    p.add_argument("--style", default=None, choices=["convfill", "prompted"],
                   help="prompt style (default: prompted for the bare shipped base, else convfill)")
    p.add_argument("--out", default=None, help="write one JSON line per phrase (context, gold, generated, scores)")
    return p


def _write_items(path: str, items: Sequence[dict]) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("".join(json.dumps(it, ensure_ascii=False) + "\n" for it in items), encoding="utf-8")


def _print_summary(summary: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(summary, ensure_ascii=False))
    else:
        print(markdown_table({summary["talker"].get("model", "talker"): summary}))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:1] == ["split"]:
            p = argparse.ArgumentParser(prog="python -m training.talker_eval split",
                                        description="Deterministic held-out split by conversation.")
            p.add_argument("--data", nargs="+", required=True)
            p.add_argument("--heldout", type=float, default=0.1, help="fraction held out")
            p.add_argument("--seed", type=int, default=0)
            p.add_argument("--out-dir", required=True, help="writes train.jsonl and heldout.jsonl here")
            a = p.parse_args(argv[1:])
            print(json.dumps(write_split(a.data, a.out_dir, a.heldout, a.seed)))
            return 0
        if argv[:1] == ["compare"]:
            p = argparse.ArgumentParser(prog="python -m training.talker_eval compare",
                                        description="Run several Talker configs on the same turns; markdown "
                                                    "table (rows: metrics, columns: configs).")
            _common(p)
            p.add_argument("--config", action="append", required=True, metavar="NAME=SPEC",
                           help="e.g. base=style=prompted or trained=lora=t.gguf,style=convfill "
                                "(SPEC keys: talker, model, lora, style); give two or more")
            p.add_argument("--out-dir", default=None, help="write NAME.jsonl per-phrase files here")
            a = p.parse_args(argv[1:])
            results = {}
            for c in a.config:
                name, sep, spec = c.partition("=")
                if not sep or not name:
                    raise ConfigError(f"--config needs NAME=SPEC, got {c!r}")
                summary, items = evaluate(TalkerSpec.parse(spec, a.seed, a.threads), a.data, a.limit, a.max_tokens,
                                          not a.no_warm, a.leak_min, a.progress)
                results[name] = summary
                if a.out_dir:
                    _write_items(str(Path(a.out_dir) / f"{name}.jsonl"), items)
            print(json.dumps(results, ensure_ascii=False) if a.json else markdown_table(results))
            return 0
        if argv[:1] == ["rescore"]:
            p = argparse.ArgumentParser(prog="python -m training.talker_eval rescore",
                                        description="Score a run's per-phrase file again with the current rules.")
            p.add_argument("--data", nargs="+", required=True, help="the data the run used")
            p.add_argument("--items", required=True, help="per-phrase JSONL written by --out")
            p.add_argument("--leak-min", type=int, default=LEAK_MIN)
            p.add_argument("--out", default=None, help="write the rescored items here")
            p.add_argument("--json", action="store_true")
            a = p.parse_args(argv[1:])
            path = Path(a.items)
            if not path.is_file():
                raise EvalDataError(f"items file not found: {path}")
            old = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
            items = rescore(a.data, old, a.leak_min)
            if a.out:
                _write_items(a.out, items)
            _print_summary(report(items, {"model": path.stem}, data=list(a.data), items_file=str(path)), a.json)
            return 0
        if argv[:1] == ["run"]:
            argv = argv[1:]
        a = _run_parser().parse_args(argv)
        spec = TalkerSpec(a.talker, a.talker_model, a.lora, a.style, a.seed, a.threads)
        summary, items = evaluate(spec, a.data, a.limit, a.max_tokens, not a.no_warm, a.leak_min, a.progress)
        if a.out:
            _write_items(a.out, items)
        _print_summary(summary, a.json)
        return 0
    except ConvFillError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
