"""Command line: `python -m convfill.eval qa|ttft|entail|talker|bench|alone|...`. Thin: parse, build parts,
run, print. `talker` keeps its own sub-commands (split, compare, rescore: `convfill.eval.talker.main`).

Talker, Reasoner and engine flags are the ones `python -m convfill turn` has (`convfill.cli`), never
retyped. Progress bars go to stderr; `--json` prints exactly one JSON object on stdout; without it the
markdown table is printed. Files (per-item JSONL, markdown, PNG) go to `--out`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from ..errors import run_command
from ..parts import add_model_args, reasoner_from_args, talker_from_args
from ..config import EngineConfig, from_arguments
from . import bench, browser, direct, store_bench, talker
from . import judge as judge_eval
from .qa import DEFAULT_DATA, KNOWLEDGE, MODES, arun_qa, attach_chunks, load_items, sample_items


def _items(args):
    items = load_items(args.data)
    if getattr(args, "chunks", None):
        items = attach_chunks(items, args.chunks)
    return sample_items(items, args.n, args.seed)


def _talker(args):
    """`talker_from_args` plus this evaluation's filler decoding choice (`--filler-sampling`)."""
    talker = talker_from_args(args)
    choice = getattr(args, "filler_sampling", "auto")
    if choice != "auto" and hasattr(talker, "filler_sampling"):
        from ..talkers.fillers import resolve

        talker.filler_sampling = resolve(choice)
    return talker


def _common(p: argparse.ArgumentParser, n_default: int = 50) -> None:
    p.add_argument("--data", type=Path, default=DEFAULT_DATA,
                   help=f"NQ-open JSONL {{question, answer: [...]}} (default: {DEFAULT_DATA})")
    p.add_argument("--n", type=int, default=n_default, help="items to sample (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0)")
    p.add_argument("--out", type=Path, default=Path("eval_out"), help="output folder (default: eval_out)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the markdown table")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    add_model_args(p)
    p.set_defaults(reasoner="oracle")  # the offline knowledge-retention ceiling


def cmd_qa(args) -> dict:
    from .report import write_qa_report

    config = from_arguments(EngineConfig, args)
    items = _items(args)
    talker = _talker(args) if args.mode != "reasoner" else None
    # alone, the Reasoner answers directly (the paper's baseline); inside ConvFill it streams knowledge chunks
    reasoner = reasoner_from_args(args, direct=args.mode == "reasoner") if args.mode != "talker" else None
    run = asyncio.run(arun_qa(items, args.mode, talker, reasoner, config, out_dir=args.out, label=args.label,
                              progress=args.progress, knowledge=args.oracle_knowledge,
                              turns_per_conversation=args.turns_per_conversation))
    paths = write_qa_report(args.out)
    summary = {**run.summary, "data": str(args.data), "seed": args.seed,
               **{k: str(v) for k, v in paths.items()}}
    return summary if args.json else {"_text": paths["markdown"].read_text(encoding="utf-8")}


def cmd_ttft(args) -> dict:
    from .ttft import Profile, arun_ttft

    profiles = [Profile.parse(s) for s in args.profiles]
    summary = asyncio.run(arun_ttft(_items(args), talker_from_args(args), profiles, args.out,
                                    from_arguments(EngineConfig, args), progress=args.progress))
    summary |= {"data": str(args.data), "seed": args.seed}
    return summary if args.json else {"_text": Path(summary["markdown"]).read_text(encoding="utf-8")}


def cmd_entail(args) -> dict:
    from .entail import entail_judge, load_turns, run_entail

    judge, judge_name = entail_judge(args.judge_model)  # fail before spending minutes on turns
    if args.records:
        turns = load_turns(args.records)
    else:
        run = asyncio.run(arun_qa(_items(args), "convfill", talker_from_args(args), reasoner_from_args(args),
                                  from_arguments(EngineConfig, args), out_dir=args.out,
                                  label=args.label or "entail", progress=args.progress))
        turns = [r.events for r in run.records]
    summary = run_entail(turns, judge, args.out, judge_name=judge_name)
    return summary if args.json else {"_text": Path(summary["markdown"]).read_text(encoding="utf-8")}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m convfill.eval",
                                description="Evaluate ConvFill: QA accuracy, latency, entailment.")
    sub = p.add_subparsers(dest="command", required=True)
    q = sub.add_parser("qa", help="open-domain QA accuracy and TTFT through the real engine")
    q.add_argument("--mode", choices=MODES, default="convfill",
                   help="convfill: Talker + Reasoner; reasoner: the Reasoner alone answers; talker: the "
                        "Talker alone, no Reasoner (default: convfill)")
    q.add_argument("--label", default=None, help="run name used in file names (default: from mode/Reasoner)")
    q.add_argument("--chunks", type=Path, default=None,
                   help="per-question knowledge chunks: JSONL {question (or user), chunks: [str | {t_ms, text}]} "
                        "(e.g. data/eval/realistic_chunks.jsonl, or a replay recording); a --data line's own "
                        "\"chunks\" are used too")
    q.add_argument("--oracle-knowledge", choices=KNOWLEDGE, default="auto",
                   help="what the oracle streams: chunks (the item's chunks, one per chunk), terse (\"The answer "
                        "is X.\"), auto (chunks when the item has them) (default: auto)")
    q.add_argument("--turns-per-conversation", type=int, default=1,
                   help="consecutive questions asked in one conversation, so the Talker sees the previous turn; "
                        "the naturalness numbers are measured over these conversations (default: 1)")
    q.add_argument("--filler-sampling", choices=["auto", "on", "off"], default="auto",
                   help="how the Talker decodes fillers: on = seeded sampling steered away from the phrases "
                        "just heard, off = greedy, auto = the runtime default (on unless "
                        "CONVFILL_FILLER_SAMPLING=off) (default: auto)")
    _common(q)
    q.set_defaults(func=cmd_qa)
    t = sub.add_parser("ttft", help="Talker TTFT vs Reasoner-alone first token vs first knowledge phrase")
    t.add_argument("--profiles", nargs="+", default=["oracle:0.5", "oracle:1", "oracle:2"],
                   help="Reasoner latency profiles NAME:SECONDS (oracle: first-chunk delay; local: "
                        "simulated network delay), default: oracle:0.5 oracle:1 oracle:2")
    _common(t)
    t.set_defaults(func=cmd_ttft)
    e = sub.add_parser("entail", help="E/N/C shares of Talker phrases under an NLI judge")
    e.add_argument("--records", nargs="+", type=Path, default=None,
                   help="per-item JSONL from `qa` runs to judge (default: run --n convfill turns first)")
    e.add_argument("--judge-model", default=None,
                   help="NLI model dir or hub id, used exactly (default: the labeling workbench's: "
                        "CONVFILL_NLI_MODEL or the paper's DeBERTa-v3 MNLI, else the shipped offline judge)")
    e.add_argument("--label", default=None, help="run name of the turns it runs (default: entail)")
    _common(e)
    e.set_defaults(func=cmd_entail)
    nt = sub.add_parser("naturalness", help="filler templates, distinct-2, fillers stating facts, dropped names of "
                                            "qa runs' per-item JSONL (no model run)")
    nt.add_argument("--records", nargs="+", type=Path, required=True, help="qa_<label>.jsonl files")
    nt.add_argument("--json", action="store_true", help="print JSON instead of the markdown table")
    nt.set_defaults(func=cmd_naturalness)
    ld = sub.add_parser("load", help="many visitors at once through the app's API: TTFT per number of sessions")
    ld.add_argument("--sessions", nargs="+", type=int, default=[1, 2, 4, 8], help="concurrent visitors per step")
    ld.add_argument("--rounds", type=int, default=3, help="turns per visitor per step")
    ld.add_argument("--reasoner-delay", type=float, default=0.5, help="the oracle's first-chunk delay (s)")
    ld.add_argument("--conversations", action="store_true",
                    help="each visitor keeps their session across rounds and asks their next question (default: "
                         "new visitors each round)")
    ld.add_argument("--think", type=float, default=0.0, help="seconds between rounds (a visitor reading and typing)")
    ld.add_argument("--stagger", type=float, default=0.0,
                    help="seconds between visitors' sends (default 0: all at the same moment)")
    ld.add_argument("--url", default=None, help="a running app to measure (default: launch one here)")
    ld.add_argument("--json", action="store_true", help="print JSON instead of the markdown table")
    ld.set_defaults(func=cmd_load)
    ll = sub.add_parser("label-load", help="label latency through the app's API with N annotators at once")
    ll.add_argument("--annotators", nargs="+", type=int, default=[1, 8], help="annotators labeling at once")
    ll.add_argument("--labels", type=int, default=20, help="labels each annotator sends")
    ll.set_defaults(func=cmd_label_load)
    h = sub.add_parser("hostile", help="replay a hostile visitor's cases against a public app: held / degraded / "
                                       "exposed / lost per case")
    h.add_argument("--url", default=None, help="a running app (default: launch one here in public mode)")
    h.add_argument("--json", action="store_true", help="print JSON instead of the markdown table")
    h.set_defaults(func=cmd_hostile)
    browser.add_parser(sub)
    store_bench.add_parser(sub)
    bench.add_parser(sub)
    direct.add_parser(sub)
    sub.add_parser("talker", add_help=False,  # parsed by convfill.eval.talker.main: see `talker --help`
                   help="Talker quality on held-out ConvFill turns, teacher-forced: evaluate, split, compare, "
                        "rescore")
    judge_eval.add_parser(sub)
    sub.add_parser("voice-parts", add_help=False,  # parsed by convfill.eval.voice_parts.main
                   help="Whisper and Piper alone on this machine, by thread count (and their effect on the Talker)")
    v = sub.add_parser("voice", help="voice to voice through the app's voice socket: spoken questions, spoken "
                                     "replies, per oracle delay and filler pacing")
    v.add_argument("--n", type=int, default=30, help="spoken questions per (delay, pacing)")
    v.add_argument("--delays", nargs="+", type=float, default=[0.5, 1.0, 2.0], help="oracle first-chunk delays (s)")
    v.add_argument("--pacings", nargs="+", choices=["audio", "text"], default=["audio"],
                   help="filler schedules to compare (default: audio)")
    v.add_argument("--typed", action="store_true", help="send the questions as text (no ASR): reply audio only")
    v.add_argument("--data", default=None, help="QA JSONL for the questions (default: NQ-open in ../shared)")
    v.add_argument("--out", default=None, help="also write every turn's numbers to this JSON file")
    v.add_argument("--json", action="store_true", help="print JSON instead of the markdown table")
    v.set_defaults(func=cmd_voice)
    return p


def cmd_voice(args) -> dict:
    from .voice import render, run_voice

    result = run_voice(args.n, tuple(args.delays), tuple(args.pacings), not args.typed, args.data, args.out)
    return result if args.json else {**result, "_text": render(result)}


def cmd_naturalness(args) -> dict:
    from .naturalness import NATURALNESS_ROWS, conversations_from_records, summarize_naturalness
    from .report import markdown_table

    runs = {p.stem.removeprefix("qa_"): summarize_naturalness(conversations_from_records(p)) for p in args.records}
    if args.json:
        return runs
    return {"_text": markdown_table(("metric", *runs), [(label, *(r.get(k) for r in runs.values()))
                                                         for k, label in NATURALNESS_ROWS])}


def cmd_label_load(args) -> dict:
    from .load import run_label_load

    return run_label_load(tuple(args.annotators), args.labels)


def cmd_hostile(args) -> dict:
    from .hostile import render, run_hostile

    rows = run_hostile(args.url)
    return {"cases": rows} if args.json else {"cases": rows, "_text": render(rows)}


def cmd_load(args) -> dict:
    from .load import render, run_load

    result = run_load(args.url, tuple(args.sessions), args.rounds, args.reasoner_delay, args.stagger,
                      args.conversations, args.think)
    return result if args.json else {**result, "_text": render(result)}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["talker"]:
        return talker.main(argv[1:])
    if argv[:1] == ["voice-parts"]:
        from . import voice_parts  # imports the voice models' libraries

        return voice_parts.main(argv[1:])
    args = build_parser().parse_args(argv)

    def run(a):
        result = a.func(a)
        print(result["_text"] if "_text" in result else json.dumps(result), flush=True)

    return run_command(run, args)
