"""Talker quality on held-out ConvFill turns: does a Talker keep the knowledge, and do its fillers invent?

Owns the measurement of issue 9 (prompted base vs trained Talker). Every phrase slot of a held-out turn is
replayed with teacher forcing: the Talker gets exactly the context the engine would build if all earlier
phrases had been the gold ones (`PhraseContext(user, chunk or None, earlier = gold phrases before this slot,
prev_user / prev_reply = the gold previous turn)`) and speaks greedily through its real `stream()`. Teacher
forcing scores each phrase on its own, so one bad phrase does not drag the rest of the turn with it, and two
Talkers are compared on identical inputs.

The slots, the split and the scores are `talker_scores` (no model needed); here the Talker speaks them and
the runs become summaries and tables. Besides those scores, `ttft_ms` is the time to the first streamed
piece of each phrase (after the engine's warm-up of the previous turn, as in the app), via
`convfill.metrics.summarize`. The same scores of the gold phrases are reported as `reference_gold`: the
ceiling of the rules, and a check that they do not flag good data.

The Talker under test is a core `TalkerSpec` (`--talker`, `--talker-model`, `--lora`, `--style`, or a
`compare` config `talker=llamacpp,lora=a.gguf,style=convfill`), plus this evaluation's own runtime `gold`.

    python -m convfill.eval talker --data heldout.jsonl --json
    python -m convfill.eval talker --data heldout.jsonl --lora talker.gguf --style convfill --out items.jsonl
    python -m convfill.eval talker split --data part_a.jsonl part_b.jsonl --heldout 0.1 --seed 0 --out-dir d
    python -m convfill.eval talker rescore --data heldout.jsonl --items items.jsonl   # rules changed
    python -m convfill.eval talker compare --data heldout.jsonl --config base=style=prompted \\
        --config trained=lora=talker.gguf,style=convfill
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import ConfigError, ConvFillError
from ..metrics import summarize
from ..prompt import PhraseContext, sanitize
from ..talkers import TalkerSpec
from ..talkers.spec import NO_ADAPTER
from .report import markdown_table
from .talker_scores import (LEAK_MIN, EvalDataError, Slot, _mean, aggregate, load_eval_conversations, rescore, score_phrase,
                            turn_slots, write_file_splits)

MAX_PHRASE_TOKENS = 48  # = EngineConfig.max_phrase_tokens default
PROG = "python -m convfill.eval talker"
GOLD = "gold"  # the evaluation-only runtime: it says the gold phrases


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


def measured(spec: TalkerSpec) -> TalkerSpec:
    """The spec as evaluation runs it: exactly the Talker named, so on llama.cpp no `lora` means the bare
    model (not the runtime's "auto" seed adapter), and greedy decoding."""
    lora = spec.lora or (NO_ADAPTER if spec.runtime == "llamacpp" else None)
    return replace(spec, lora=lora, temperature=0.0)


def talker_under_test(spec: TalkerSpec, turns: Sequence[Sequence[Slot]]):
    """The Talker under test: the gold phrases of `turns` for runtime `gold`, else `measured(spec).build()`."""
    if spec.runtime == GOLD:
        return GoldTalker(turns)
    return measured(spec).build()


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
                "scores": score_phrase(s, text, leak_min), "gold_scores": score_phrase(s, s.gold, leak_min),
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


def evaluate_talker(spec: TalkerSpec, data: Sequence[str], limit: int | None = None, max_tokens: int = MAX_PHRASE_TOKENS,
             warm: bool = True, leak_min: int = LEAK_MIN, progress: bool = False) -> tuple[dict, list[dict]]:
    """Load the data and the Talker, replay, score: (summary, items)."""
    turns = select_turns(turn_slots(load_eval_conversations(data)), limit, spec.seed)
    t0 = time.perf_counter()
    talker = talker_under_test(spec, turns)
    load_s = time.perf_counter() - t0
    try:
        t0 = time.perf_counter()
        items = asyncio.run(run_turns(talker, turns, max_tokens, warm, leak_min, progress))
        run_s = time.perf_counter() - t0
    finally:
        talker.close()
    summary = report(items, talker.describe(), data=[str(d) for d in data], limit=limit, seed=spec.seed,
                     threads=spec.threads, load_s=round(load_s, 2), run_s=round(run_s, 2))
    return summary, items


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


def compare_table(results: dict[str, dict], gold: bool = True) -> str:
    """Rows: metrics; columns: the configs (and the gold phrases' scores as a reference column)."""
    cols = list(results)
    ref = next(iter(results.values()))["reference_gold"] if gold and results else None
    head = ["metric", *cols] + (["gold phrases (reference)"] if ref else [])
    rows = [[label, *(_cell(results[c].get(key)) for c in cols),
             *([_cell(ref.get(key)) if key in ref else ""] if ref else [])] for key, label in TABLE_ROWS]
    return markdown_table(head, rows).rstrip("\n")


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
    p = argparse.ArgumentParser(prog=PROG,
                                description="Measure a Talker on held-out ConvFill turns (teacher-forced). "
                                            "Subcommands: split, compare, rescore (see --help of each).")
    _common(p)
    p.add_argument("--talker", default="llamacpp", choices=["llamacpp", "transformers", GOLD])
    p.add_argument("--talker-model", default=None, help="GGUF (llamacpp) or HF dir/GGUF (transformers)")
    p.add_argument("--lora", dest="talker_lora", default=None,
                   help="GGUF LoRA adapter on the model (llamacpp; default: none, the bare model)")
    p.add_argument("--style", dest="talker_style", default=None, choices=["convfill", "prompted"],
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
        print(compare_table({summary["talker"].get("model", "talker"): summary}))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:1] == ["split"]:
            p = argparse.ArgumentParser(prog=f"{PROG} split",
                                        description="Deterministic held-out split by conversation.")
            p.add_argument("--data", nargs="+", required=True)
            p.add_argument("--heldout", type=float, default=0.1, help="fraction held out")
            p.add_argument("--seed", type=int, default=0)
            p.add_argument("--out-dir", required=True, help="writes train.jsonl and heldout.jsonl here")
            a = p.parse_args(argv[1:])
            print(json.dumps(write_file_splits(a.data, a.out_dir, a.heldout, a.seed)))
            return 0
        if argv[:1] == ["compare"]:
            p = argparse.ArgumentParser(prog=f"{PROG} compare",
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
                summary, items = evaluate_talker(TalkerSpec.parse(spec, seed=a.seed, threads=a.threads), a.data, a.limit, a.max_tokens,
                                          not a.no_warm, a.leak_min, a.progress)
                results[name] = summary
                if a.out_dir:
                    _write_items(str(Path(a.out_dir) / f"{name}.jsonl"), items)
            print(json.dumps(results, ensure_ascii=False) if a.json else compare_table(results))
            return 0
        if argv[:1] == ["rescore"]:
            p = argparse.ArgumentParser(prog=f"{PROG} rescore",
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
        spec = TalkerSpec.from_args(a, seed=a.seed, threads=a.threads)
        summary, items = evaluate_talker(spec, a.data, a.limit, a.max_tokens, not a.no_warm, a.leak_min, a.progress)
        if a.out:
            _write_items(a.out, items)
        _print_summary(summary, a.json)
        return 0
    except ConvFillError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
