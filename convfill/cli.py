"""Command line: `python -m convfill turn|chat|bench|doctor|reasoners`. Thin: parsing and printing only.

`bench` is the evaluation package's (`convfill.eval.bench`, also `python -m convfill.eval bench`), kept
here under its old name.

Errors of the `ConvFillError` family print one line and exit 1 (set CONVFILL_DEBUG=1 for the traceback).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from .config import EngineConfig, from_arguments
from .errors import ConvFillError, run_command
from .events import ChunkArrived, ErrorEvent, Event, PhraseDelta, PhraseEnded, TurnEnded
from .eval import bench
from .metrics import turn_metrics
from .parts import add_model_args, reasoner_from_args, talker_from_args


def _print_event(ev: Event, as_json: bool, deltas: bool) -> None:
    if as_json:
        if deltas or not isinstance(ev, PhraseDelta):
            print(json.dumps(ev.to_dict()), flush=True)
        return
    if isinstance(ev, ChunkArrived):
        print(f"[{ev.t_ms:7.0f} ms] knowledge #{ev.chunk_index}: {ev.text}", flush=True)
    elif isinstance(ev, PhraseEnded):
        src = "filler" if ev.source == "sil" else ("error" if ev.source == "error" else f"from #{ev.chunk_index}")
        print(f"[{ev.t_ms:7.0f} ms] talker ({src}): {ev.text}", flush=True)
    elif isinstance(ev, ErrorEvent):
        print(f"[{ev.t_ms:7.0f} ms] error ({ev.where}, {ev.category}): {ev.message}", flush=True)
    elif isinstance(ev, TurnEnded):
        print(f"[{ev.t_ms:7.0f} ms] turn ended: {ev.reason}", flush=True)


async def _close_reasoner(engine) -> None:
    # SDK clients own connection pools on this event loop: close them before asyncio.run closes the loop.
    if engine.reasoner is not None:
        await engine.reasoner.aclose()


async def _run_turns(engine, texts, as_json: bool, deltas: bool) -> None:
    for text in texts:
        events = []
        async for ev in engine.turn(text):
            events.append(ev)
            _print_event(ev, as_json, deltas)
        if not as_json:
            m = turn_metrics(events)
            print(f"  talker TTFT {m.talker_ttft_ms} ms | reasoner first chunk {m.reasoner_first_chunk_ms} ms"
                  f" | fillers {m.n_fillers} | total {m.total_ms} ms", flush=True)


def cmd_turn(args) -> None:
    from .engine import Engine

    reasoner = reasoner_from_args(args)  # first: a missing key fails before the Talker model loads
    engine = Engine(talker_from_args(args), reasoner, from_arguments(EngineConfig, args))

    async def main():
        try:
            await _run_turns(engine, [args.text], args.json, args.deltas)
        finally:
            await _close_reasoner(engine)

    asyncio.run(main())


def cmd_chat(args) -> None:
    from .engine import Engine

    reasoner = reasoner_from_args(args)  # first: a missing key fails before the Talker model loads
    engine = Engine(talker_from_args(args), reasoner, from_arguments(EngineConfig, args))
    print("ConvFill chat. Empty line or Ctrl-D to quit.", file=sys.stderr)

    async def loop():
        while True:
            try:
                text = await asyncio.to_thread(input, "you> ")
            except EOFError:
                return
            if not text.strip():
                return
            try:
                await _run_turns(engine, [text], args.json, False)
            except ConvFillError as e:
                print(f"Error: {e}", file=sys.stderr)

    async def main():
        try:
            await loop()
        finally:
            await _close_reasoner(engine)

    asyncio.run(main())


def cmd_bench(args) -> None:
    """`convfill.eval.bench`'s command, printed as this CLI prints: JSON, or its "key: value" lines."""
    result = bench.bench(args)
    print(result["_text"] if "_text" in result else json.dumps(result))


def cmd_reasoners(args) -> None:
    from .reasoners import REASONERS, reasoner_status

    rows = [reasoner_status(n) for n in REASONERS]
    if args.json:
        print(json.dumps(rows))
    else:
        for r in rows:
            print(f"{r['name']:10s} {'usable' if r['usable'] else 'unavailable':12s} {r['detail']}")


def cmd_doctor(args) -> int:
    from .doctor import as_dicts, exit_code, render, run_checks

    rows = run_checks()
    print(json.dumps(as_dicts(rows)) if args.json else render(rows))
    return exit_code(rows)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m convfill", description="Conversational infill: a fast local "
                                "Talker speaks while a Reasoner streams knowledge.")
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("turn", help="run one turn and print its events")
    t.add_argument("text", help="what the user says")
    t.add_argument("--json", action="store_true", help="one JSON object per event")
    t.add_argument("--deltas", action="store_true", help="with --json, also print token deltas")
    add_model_args(t)
    t.set_defaults(func=cmd_turn)
    c = sub.add_parser("chat", help="interactive conversation in the terminal")
    c.add_argument("--json", action="store_true", help="one JSON object per event")
    add_model_args(c)
    c.set_defaults(func=cmd_chat)
    bench.add_parser(sub).set_defaults(func=cmd_bench)  # the evaluation's bench, under this CLI too
    d = sub.add_parser("doctor", help="what this machine can do: one row per part, OK / WARN / FAIL with the fix")
    d.add_argument("--json", action="store_true", help="print a JSON list of rows")
    d.set_defaults(func=cmd_doctor)
    r = sub.add_parser("reasoners", help="list Reasoners and whether each is usable here")
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=cmd_reasoners)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(args.func, args)
