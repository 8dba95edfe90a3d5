"""Command line: `python -m labeling score|export|stats`. Thin: parsing and printing only.

A judge's accuracy (on labelled pairs, or against the people's labels in a store) is an evaluation:
`python -m convfill.eval judge --data FILE | --labels-db DB` (`convfill/eval/judge.py`).

Errors of the `ConvFillError` family (bad file, locked database, model that cannot load) print one line
and exit 1 (set CONVFILL_DEBUG=1 for the traceback).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from convfill.errors import run_command
from convfill.errors import ConvFillError, InputError

from convfill.nli.judge import LABELS, NLIError, load_judge


def _store(args, create: bool = False):
    """The store at --db (default: CONVFILL_DB / ~/.convfill/convfill.db); only `score` may create one."""
    from convfill.paths import db_path

    from .store import LabelStore

    path = Path(args.db) if args.db else db_path()
    if not create and not path.is_file():
        raise InputError(f"no database at {path} (create one with `python -m labeling score --db {path} "
                         "--input FILE` or by chatting in the app)")
    return LabelStore(path)


def _judge(args):
    """The judge for a batch job: an explicit --model must load; otherwise default, then offline judge."""
    judge, msg = load_judge(args.model, fallback=args.model is None, batch_size=args.batch_size)
    if judge is None:
        raise NLIError(msg)
    print(msg, file=sys.stderr)
    return judge


def cmd_score(args) -> None:
    from .scoring import score_unscored

    if args.input and not Path(args.input).is_file():
        raise InputError(f"no such file: {args.input}")
    judge = None if args.import_only else _judge(args)  # load first: a dead model changes nothing
    store = _store(args, create=True)
    out: dict = {"db": str(store.path)}
    if args.input:
        r = store.import_convfill(args.input, reasoner=args.reasoner)
        out["imported"] = {"conversations": r.conversations, "turns": r.turns, "phrases": r.phrases,
                           "skipped_duplicates": r.skipped}
    if judge is not None:
        counts = score_unscored(store, judge, progress=True, limit=args.limit)  # bar on stderr
        out["model"] = judge.model_id
        out["scored"] = {lab: counts.get(lab, 0) for lab in LABELS}
    p = store.progress()
    out["phrases_total"], out["phrases_scored"] = p.total, p.scored
    if args.json:
        print(json.dumps(out))
        return
    if "imported" in out:
        i = out["imported"]
        print(f"imported {i['conversations']} conversations, {i['turns']} turns, {i['phrases']} phrases "
              f"({i['skipped_duplicates']} conversations already present)")
    if "scored" in out:
        s = out["scored"]
        print(f"scored {sum(s.values())} phrases with {out['model']}: "
              + ", ".join(f"{k} {v}" for k, v in s.items()))
    print(f"{out['phrases_scored']}/{out['phrases_total']} phrases in {out['db']} have a model suggestion")


def cmd_export(args) -> None:
    from .export import export_csv, export_jsonl, export_replay

    store = _store(args)
    s = {"jsonl": export_jsonl, "csv": export_csv, "replay": export_replay}[args.format](store, args.out)
    if args.json:
        print(json.dumps({"out": str(args.out), "format": args.format, **s.__dict__}))
    elif args.format == "replay":
        print(f"wrote {s.turns} turns with {s.phrases} knowledge chunks to {args.out} (for --reasoner replay)")
    elif args.format == "jsonl":
        print(f"wrote {s.conversations} conversations, {s.turns} turns, {s.phrases} phrases to {args.out} "
              f"({s.dropped} phrases not acceptable)")
    else:
        print(f"wrote {s.rows} rows about {s.phrases} phrases to {args.out}")


def cmd_stats(args) -> None:
    from .agreement import pairwise

    store = _store(args)
    p = store.progress(args.annotator)
    pairs = pairwise(store.labels_by_annotator())
    out = {**p.__dict__, "agreement": [a.__dict__ for a in pairs]}
    if args.json:
        print(json.dumps(out))
        return
    print(f"{p.labeled}/{p.total} phrases labeled by {p.annotators} people; {p.scored} scored by a model"
          + (f"; {p.mine} by {args.annotator}" if args.annotator else ""))
    for a in pairs:
        k = "undefined" if a.kappa is None else f"{a.kappa:.3f}"
        print(f"  {a.a} vs {a.b}: {a.n} shared phrases, agreement {a.agreement:.2f}, kappa {k}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m labeling",
                                description="NLI labels per Talker phrase, human relabeling, exports for training.")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp, model=True, db=True):
        if db:
            sp.add_argument("--db", default=None, help="SQLite store (default: CONVFILL_DB or ~/.convfill/convfill.db)")
        if model:
            sp.add_argument("--model", default=None,
                            help="NLI model: hub id or local directory (default: CONVFILL_NLI_MODEL or "
                                 "MoritzLaurer/DeBERTa-v3-base-mnli, then the offline judge)")
            sp.add_argument("--batch-size", type=int, default=16, help="pairs per forward pass")
        sp.add_argument("--json", action="store_true", help="print one JSON object")

    s = sub.add_parser("score", help="import a ConvFill JSONL file and/or score unscored phrases")
    common(s)
    s.add_argument("--input", default=None, help="ConvFill conversation JSONL to import first")
    s.add_argument("--reasoner", default="import", help="Reasoner name stored with imported turns")
    s.add_argument("--limit", type=int, default=None, help="score at most N phrases")
    s.add_argument("--import-only", action="store_true", help="import without scoring")
    s.set_defaults(func=cmd_score)
    x = sub.add_parser("export", help="ConvFill JSONL of acceptable phrases, or CSV of every judgement")
    common(x, model=False)
    x.add_argument("--format", choices=["jsonl", "csv", "replay"], required=True,
                   help="jsonl: training data; csv: every judgement; replay: each turn's knowledge chunks with their "
                        "arrival times, for `--reasoner replay --model FILE`")
    x.add_argument("--out", required=True, help="file to write")
    x.set_defaults(func=cmd_export)
    st = sub.add_parser("stats", help="labeling progress and inter-annotator agreement")
    common(st, model=False)
    st.add_argument("--annotator", default=None, help="also count this person's labels")
    st.set_defaults(func=cmd_stats)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # OSError too: unreadable input, unwritable --out or --db
    return run_command(args.func, args, catch=(ConvFillError, OSError))
