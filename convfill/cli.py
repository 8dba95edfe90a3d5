"""Command line: `python -m convfill turn|chat|bench|reasoners`. Thin: parsing and printing only.

Errors of the `ConvFillError` family print one line and exit 1 (set CONVFILL_DEBUG=1 for the traceback).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys

from .config import EngineConfig, add_arguments, from_arguments
from .errors import ConvFillError
from .events import ChunkArrived, ErrorEvent, Event, PhraseDelta, PhraseEnded, TurnEnded
from .metrics import turn_metrics


def _add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("Talker")
    g.add_argument("--talker", default="llamacpp", help="Talker runtime: llamacpp (GGUF) or transformers")
    g.add_argument("--talker-model", default=None,
                   help="GGUF path (llamacpp) or hub id / local dir (transformers); default: the shipped "
                        "SmolLM2-135M-Instruct Q4_1")
    g.add_argument("--talker-lora", default=None,
                   help="GGUF LoRA adapter for the llamacpp Talker: a path; 'seed' = the shipped seed-trained "
                        "ConvFill adapter; 'none' = the bare base model, prompted. Default: the seed adapter "
                        "on the shipped base, none on a --talker-model of your own")
    g.add_argument("--talker-style", choices=["convfill", "prompted"], default=None,
                   help="prompt style (default: prompted for the bare shipped base, i.e. --talker-lora none; "
                        "convfill otherwise)")
    g.add_argument("--temperature", type=float, default=0.0, help="Talker sampling temperature (0 = greedy)")
    g = p.add_argument_group("Reasoner")
    g.add_argument("--reasoner", default="local", help="Reasoner name (see `python -m convfill reasoners`)")
    g.add_argument("--knowledge", default=None, help="knowledge text for the oracle Reasoner")
    g.add_argument("--reasoner-delay", type=float, default=None,
                   help="seconds before the Reasoner's first chunk (oracle: its first-chunk latency; "
                        "local: a simulated network delay)")
    g.add_argument("--reasoner-gap", type=float, default=0.3, help="oracle: seconds between chunks")
    g.add_argument("--model", default=None, help="Reasoner model name (cloud/server Reasoners)")
    g.add_argument("--base-url", default=None,
                   help="a custom endpoint for the Reasoner (an OpenAI-compatible server, a proxy); it never "
                        "receives the provider's environment key, only the one named by --api-key-env")
    g.add_argument("--api-key-env", default=None,
                   help="environment variable holding the key for --base-url; the key itself is never a "
                        "flag, so it stays out of shell history")
    add_arguments(p.add_argument_group("Engine"), EngineConfig)


def build_talker(args):
    from .talkers import get_talker

    opts = {"lora_path": args.talker_lora} if args.talker == "llamacpp" and args.talker_lora else {}
    return get_talker(args.talker, model=args.talker_model, style=args.talker_style,
                      temperature=args.temperature, **opts)


def reasoner_spec(args, direct: bool = False):
    """The `ReasonerSpec` of the Reasoner flags (`--knowledge` alone implies the oracle)."""
    from .reasoners import ReasonerSpec

    name = "oracle" if args.knowledge and args.reasoner == "local" else args.reasoner
    return ReasonerSpec(name=name, model=args.model or "", base_url=args.base_url or "",
                        api_key_env=args.api_key_env or "", knowledge=args.knowledge or "",
                        delay_s=args.reasoner_delay, gap_s=args.reasoner_gap, direct=direct)


def build_reasoner(args):
    from .reasoners import build_reasoner as build

    return build(reasoner_spec(args))


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

    reasoner = build_reasoner(args)  # first: a missing key fails before the Talker model loads
    engine = Engine(build_talker(args), reasoner, from_arguments(EngineConfig, args))

    async def main():
        try:
            await _run_turns(engine, [args.text], args.json, args.deltas)
        finally:
            await _close_reasoner(engine)

    asyncio.run(main())


def cmd_chat(args) -> None:
    from .engine import Engine

    reasoner = build_reasoner(args)  # first: a missing key fails before the Talker model loads
    engine = Engine(build_talker(args), reasoner, from_arguments(EngineConfig, args))
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
    from .bench import run_bench

    result = run_bench(build_talker(args), rounds=args.rounds, mode=args.mode)
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k}: {v}")


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
    _add_model_args(t)
    t.set_defaults(func=cmd_turn)
    c = sub.add_parser("chat", help="interactive conversation in the terminal")
    c.add_argument("--json", action="store_true", help="one JSON object per event")
    _add_model_args(c)
    c.set_defaults(func=cmd_chat)
    b = sub.add_parser("bench", help="Talker TTFT and decode speed on realistic first phrases")
    b.add_argument("--json", action="store_true", help="print one JSON object")
    b.add_argument("--rounds", type=int, default=2, help="passes over the utterance set")
    b.add_argument("--mode", choices=["cold", "typed", "reference"], default="cold",
                   help="cold: the cache holds only the template; typed: the prompt was prefilled while the "
                        "user typed; reference: interleaved with the authors' loop (transformers bf16 "
                        "generate + TextIteratorStreamer, full re-prefill) on the same weights")
    _add_model_args(b)
    b.set_defaults(func=cmd_bench)
    d = sub.add_parser("doctor", help="what this machine can do: one row per part, OK / WARN / FAIL with the fix")
    d.add_argument("--json", action="store_true", help="print a JSON list of rows")
    d.set_defaults(func=cmd_doctor)
    r = sub.add_parser("reasoners", help="list Reasoners and whether each is usable here")
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=cmd_reasoners)
    return p


def error_line(e: BaseException) -> str:
    """One line for the user: an OSError names the file, anything else is its message."""
    if isinstance(e, OSError) and not isinstance(e, ConvFillError):
        return f"Error: {e.strerror or e}: {e.filename or ''}".rstrip(": ")
    return f"Error: {e}"


def run_command(fn, args, catch: tuple[type[BaseException], ...] = (ConvFillError,)) -> int:
    """The edge shared by every `python -m` CLI of the project: `catch`-ed errors print one line and exit
    1 (CONVFILL_DEBUG=1 re-raises them with the traceback); Ctrl-C exits 130."""
    try:
        code = fn(args)
    except catch as e:
        if os.environ.get("CONVFILL_DEBUG"):
            raise
        print(error_line(e), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code if isinstance(code, int) else 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(args.func, args)
