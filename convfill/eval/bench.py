"""Talker speed benchmark: time to first token of realistic first phrases, and decode speed.

A script, not a timed test (timings depend on the machine): `python -m convfill bench --json [--mode M]`,
the same command as `python -m convfill.eval bench` (one parser, `add_parser`, serves both CLIs).
Each utterance is measured as the first phrase of a fresh turn (`<sil>` knowledge, no earlier phrases),
after one warm-up, the way the engine issues it: cold, after typing (prefill while typing), or side by side
with the reference implementation's loop. Results go in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import time
from pathlib import Path

from ..metrics import percentile
from ..parts import add_model_args, talker_from_args
from ..prompt import PhraseContext

# Realistic spoken requests of 5-40 words (the range the Done-when criterion names).
UTTERANCES = [
    "Who wrote Pride and Prejudice?",
    "What is the capital city of Australia?",
    "How many moons does Jupiter have right now?",
    "Can you tell me when the Eiffel Tower was built?",
    "What's a good way to keep basil alive on a windowsill?",
    "I need to change my flight to Boston from Friday to Sunday, can you help?",
    "How long should I boil an egg if I want the yolk a little runny?",
    "My laptop battery drains really fast even when I'm not doing anything, what could cause that?",
    "What are some fun things to do in Lisbon with two kids over a long weekend?",
    "Can you explain how vaccines train the immune system, in simple terms for a ten year old?",
    "I'm planning a surprise birthday dinner for my wife next Saturday, about twelve people, any ideas for the menu?",
    "Why is the sky blue during the day but red and orange at sunset?",
    "What's the difference between a Roth IRA and a traditional IRA, and which one makes more sense if I'm twenty five?",
    "I ordered a blender three weeks ago and it still hasn't arrived, the tracking number doesn't show anything, what should I do?",
    "Could you remind me how photosynthesis works? My daughter has a science test tomorrow morning and I want to help her review.",
    "I keep waking up at three in the morning and can't fall back asleep, I've tried cutting coffee after noon, what else could I try to sleep through the night?",
    "We're hosting a team offsite for about thirty people in October somewhere within two hours of Chicago, do you have suggestions for venues and activities that work for different fitness levels?",
    "What year did the first person walk on the moon?",
    "How do I reset my router if the internet keeps dropping every few minutes?",
    "Is it safe to take ibuprofen and acetaminophen together for a bad headache?",
    "Tell me something interesting about octopuses.",
    "Which planet in our solar system has the longest day, and how long is it compared to ours?",
    "I want to start running but my knees sometimes hurt after long walks, how should I begin without hurting myself?",
    "Can you help me write a short thank you note to my neighbor who watered my plants while I was away for two weeks?",
    "What is the boiling point of water at the top of Mount Everest?",
    "My package says it was delivered but it's not at my door or with my neighbors, who should I contact first?",
    "How many calories does a person burn walking for an hour at a normal pace?",
    "What should I pack for a four day hiking trip in the Scottish Highlands in late September when the weather can change quickly?",
    "Explain the rules of cricket to me like I have never watched a single sport in my life.",
    "Who painted the ceiling of the Sistine Chapel?",
    "My daughter is starting university in another city this autumn and she has never cooked for herself, "
    "so could you suggest five simple, cheap and healthy dinners she could make in a small kitchen with "
    "only one pan?",
    "Our company wants to move its customer support from email to live chat, and I need to "
    "explain to the managers what staffing, training and software we would need, and how to measure "
    "whether it is working, can you help?",
]


# Knowledge phrases: the first chunk of the first 32 questions of data/eval/realistic_chunks.jsonl (NQ-open
# questions, chunks written the way a Reasoner streams them). Decoded greedily, they restate their chunk.
CHUNKS = Path(__file__).resolve().parents[2] / "data" / "eval" / "realistic_chunks.jsonl"


def knowledge_contexts(n: int = 32) -> list[PhraseContext]:
    """The knowledge phrases the bench decodes ([] where the repository's data folder is absent)."""
    if not CHUNKS.exists():
        return []
    rows = [json.loads(line) for line in CHUNKS.read_text().splitlines()[:n]]
    return [PhraseContext(r["question"], r["chunks"][0]) for r in rows]


async def _measure(talker, utterance: str | PhraseContext, max_tokens: int) -> tuple[float, int, float]:
    ctx = utterance if isinstance(utterance, PhraseContext) else PhraseContext(utterance)
    t0 = time.perf_counter()
    first = None
    n = 0
    async for _ in talker.stream(ctx, max_tokens):
        if first is None:
            first = time.perf_counter()
        n += 1
    end = time.perf_counter()
    return (first - t0) * 1000.0, n, end - first


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 1)


MODES = ("cold", "typed", "reference")
SETTLE_S = 0.5  # a person typing: a word every ~1 s, far longer than one prefix prefill here


async def _cold(talker, utterance: str | PhraseContext, max_tokens: int):
    # A different utterance first, so the KV cache holds no prefix of this one but the template.
    await _measure(talker, "Okay.", 1)
    return await _measure(talker, utterance, max_tokens)


async def _typed(talker, utterance: str, max_tokens: int):
    """Send -> first token after the utterance was typed: the Chat tab prefills as its textbox's input
    events arrive; here at each word (at 5 characters/s a word takes ~1 s to type, far longer than
    prefilling it, so every prefill is done before the next one starts)."""
    await _measure(talker, "Okay.", 1)
    words = utterance.split()
    for i in range(1, len(words) + 1):
        await talker.prefill(PhraseContext(" ".join(words[:i])))
    return await _measure(talker, utterance, max_tokens)


def _summary(results) -> dict:
    ttfts = [r[0] for r in results]
    tokens = sum(r[1] - 1 for r in results)
    decode_s = sum(r[2] for r in results)
    return {"n": len(results), "talker_ttft_ms_p50": _round(percentile(ttfts, 50)),
            "talker_ttft_ms_p95": _round(percentile(ttfts, 95)), "talker_ttft_ms_max": _round(max(ttfts, default=None)),
            "talker_decode_tok_s": round(tokens / decode_s, 1) if decode_s else None}


def run_bench(talker, rounds: int = 1, max_tokens: int = 48, mode: str = "cold") -> dict:
    """TTFT percentiles and decode tokens/s for the first phrase of each utterance (a `<sil>` filler), and the
    decode speed of knowledge phrases (`knowledge_contexts`, cold, after the utterances).

    mode: "cold" (the cache holds only the template), "typed" (the prompt was prefilled while typing), or
    "reference" (cold, interleaved utterance by utterance with `reference.ReferenceLoop` on the same
    weights, and the ratio of their TTFT p50).
    """
    if mode not in MODES:
        raise ValueError(f"bench mode {mode!r}: use one of {', '.join(MODES)}")
    reference = None
    if mode == "reference":
        from ..talkers.reference import ReferenceLoop

        # loaded on the Talker's model thread too: any torch work on another thread leaves an OpenMP team
        # there (see ReferenceLoop.measure)
        reference = talker._model_thread.submit(ReferenceLoop.same_weights_as, talker).result()
    measure = _typed if mode == "typed" else _cold
    contexts = knowledge_contexts()  # read once, before the event loop runs

    async def main():
        await _measure(talker, "Hello, are you there?", 8)  # warm-up: loads pages, builds graphs
        if reference is not None:
            reference.measure("Hello, are you there?", 8)
        ours, theirs = [], []
        for _ in range(rounds):
            for u in UTTERANCES:
                ours.append(await measure(talker, u, max_tokens))
                if reference is not None:
                    # Both runtimes' OpenMP threads spin for a while after each call: let them settle first,
                    # or each measures the other's busy-waiting (measured: ours 66 -> 105 ms TTFT).
                    await asyncio.sleep(SETTLE_S)
                    theirs.append(reference.measure(u, max_tokens))
                    await asyncio.sleep(SETTLE_S)
        knowledge = [await _cold(talker, ctx, max_tokens) for _ in range(rounds) for ctx in contexts]
        return ours, theirs, knowledge

    ours, theirs, knowledge = asyncio.run(main())
    word_counts = [len(u.split()) for u in UTTERANCES]
    out = {"talker": talker.describe(), "mode": mode, **_summary(ours),
           "utterance_words_min": min(word_counts), "utterance_words_max": max(word_counts),
           "knowledge_n": len(knowledge), "knowledge_decode_tok_s": _summary(knowledge)["talker_decode_tok_s"],
           "cpu_count": os.cpu_count(), "machine": platform.machine()}
    if reference is not None:
        ref = _summary(theirs)
        out["reference"] = {"procedure": reference.describe(), **ref}
        if ref["talker_ttft_ms_p50"] and out["talker_ttft_ms_p50"]:
            out["ttft_p50_ratio_reference_over_ours"] = round(ref["talker_ttft_ms_p50"] / out["talker_ttft_ms_p50"], 2)
    return out


def bench(args) -> dict:
    """The `bench` command: `run_bench` on the Talker flags' Talker; without --json, "key: value" lines."""
    result = run_bench(talker_from_args(args), rounds=args.rounds, mode=args.mode)
    return result if args.json else {**result, "_text": "\n".join(f"{k}: {v}" for k, v in result.items())}


def add_parser(sub) -> argparse.ArgumentParser:
    """The `bench` subcommand, for `python -m convfill` and `python -m convfill.eval` alike."""
    b = sub.add_parser("bench", help="Talker TTFT and decode speed on realistic first phrases")
    b.add_argument("--json", action="store_true", help="print one JSON object")
    b.add_argument("--rounds", type=int, default=2, help="passes over the utterance set")
    b.add_argument("--mode", choices=list(MODES), default="cold",
                   help="cold: the cache holds only the template; typed: the prompt was prefilled while the "
                        "user typed; reference: interleaved with the authors' loop (transformers bf16 "
                        "generate + TextIteratorStreamer, full re-prefill) on the same weights")
    add_model_args(b)
    b.set_defaults(func=bench)
    return b
