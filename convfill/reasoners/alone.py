"""The Reasoner-alone baseline: the large model answers the user itself, and we time its first token.

ConvFill's claim is that the Talker speaks long before a Reasoner could; this is the other side of that
comparison. Build the Reasoner in direct mode (`direct=True`, i.e. `DIRECT_SYSTEM_PROMPT`) so it answers
conversationally rather than as a fact feed, then `answer_alone` streams one answer and reports when the
first text and the end arrived, on the injected clock.

    python -m convfill.reasoners.alone "Why is the sky blue?" --reasoner openai \\
        --base-url http://127.0.0.1:8080/v1 --model smollm2 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from contextlib import aclosing
from dataclasses import asdict, dataclass

from ..clock import Clock, MonotonicClock
from ..errors import ConvFillError
from ..metrics import summarize
from .base import DIRECT_SYSTEM_PROMPT, Message, Reasoner, ReasonerRequest


@dataclass(frozen=True)
class AloneAnswer:
    """One Reasoner-alone answer.

    Parameters:
        text: the whole answer.
        ttft_ms: request start to first non-empty text (None if nothing came).
        total_ms: request start to end of stream.
    """

    text: str
    ttft_ms: float | None
    total_ms: float


async def answer_alone(reasoner: Reasoner, user: str, history: tuple[Message, ...] = (),
                       clock: Clock | None = None) -> AloneAnswer:
    """Stream `reasoner`'s answer to `user` and time it; errors propagate as `ReasonerError`."""
    clock = clock or MonotonicClock()
    t0 = clock.now_ms()
    ttft, parts = None, []
    async with aclosing(reasoner.stream(ReasonerRequest(user, history))) as deltas:
        async for d in deltas:
            if ttft is None and d.strip():
                ttft = round(clock.now_ms() - t0, 3)
            parts.append(d)
    return AloneAnswer("".join(parts).strip(), ttft, round(clock.now_ms() - t0, 3))


def build_direct_reasoner(name: str, **options) -> Reasoner:
    """The registered Reasoner `name` set up to answer the user directly."""
    from . import get_reasoner

    if name in ("openai", "anthropic", "gemini"):
        return get_reasoner(name, direct=True, **options)
    if name == "local":
        return get_reasoner(name, system=DIRECT_SYSTEM_PROMPT, **options)
    return get_reasoner(name, **options)  # oracle/scripted: already "direct"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m convfill.reasoners.alone",
                                description="Reasoner-alone baseline: time to first token of a direct answer.")
    p.add_argument("text", help="what the user says")
    p.add_argument("--reasoner", default="local", help="Reasoner name (see `python -m convfill reasoners`)")
    p.add_argument("--model", default=None, help="Reasoner model name")
    p.add_argument("--base-url", default=None, help="OpenAI-compatible server URL (reasoner openai)")
    p.add_argument("--api-key-env", default=None, help="variable holding the key for --base-url")
    p.add_argument("--max-tokens", type=int, default=None, help="answer length cap")
    p.add_argument("--rounds", type=int, default=1, help="repeat the request and summarise the timings")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    opts = {k: v for k, v in (("model", args.model), ("base_url", args.base_url),
                              ("api_key_env", args.api_key_env), ("max_tokens", args.max_tokens)) if v}

    async def run() -> list[AloneAnswer]:
        reasoner = build_direct_reasoner(args.reasoner, **opts)
        try:
            return [await answer_alone(reasoner, args.text) for _ in range(args.rounds)]
        finally:
            await reasoner.aclose()

    try:
        answers = asyncio.run(run())
    except ConvFillError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    result = {"reasoner": args.reasoner, "model": args.model, "rounds": args.rounds,
              "ttft_ms": summarize([a.ttft_ms for a in answers]),
              "total_ms": summarize([a.total_ms for a in answers]), "answers": [asdict(a) for a in answers]}
    if args.json:
        print(json.dumps(result))
    else:
        print(answers[-1].text)
        print(f"TTFT {result['ttft_ms']} ms | total {result['total_ms']} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
