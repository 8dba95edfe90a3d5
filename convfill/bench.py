"""Talker speed benchmark: time to first token of realistic first phrases, and decode speed.

A script, not a timed test (timings depend on the machine): `python -m convfill bench --json`.
Each utterance is measured as the first phrase of a fresh turn (`<sil>` knowledge, no earlier phrases),
after one warm-up, the way the engine issues it. Results go in docs/benchmarks.md.
"""

from __future__ import annotations

import asyncio
import os
import platform
import time

from .metrics import percentile
from .prompt import PhraseContext

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


async def _measure(talker, utterance: str, max_tokens: int) -> tuple[float, int, float]:
    t0 = time.perf_counter()
    first = None
    n = 0
    async for _ in talker.stream(PhraseContext(utterance), max_tokens):
        if first is None:
            first = time.perf_counter()
        n += 1
    end = time.perf_counter()
    return (first - t0) * 1000.0, n, end - first


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 1)


def run_bench(talker, rounds: int = 1, max_tokens: int = 48) -> dict:
    """TTFT percentiles and decode tokens/s for the first phrase of each utterance."""

    async def main():
        await _measure(talker, "Hello, are you there?", 8)  # warm-up: loads pages, builds graphs
        out = []
        for _ in range(rounds):
            for u in UTTERANCES:
                # A different utterance first, so the KV cache holds no prefix of this one but the template.
                await _measure(talker, "Okay.", 1)
                out.append(await _measure(talker, u, max_tokens))
        return out

    results = asyncio.run(main())
    ttfts = [r[0] for r in results]
    tokens = sum(r[1] - 1 for r in results)
    decode_s = sum(r[2] for r in results)
    word_counts = [len(u.split()) for u in UTTERANCES]
    return {
        "talker": talker.describe(),
        "n": len(results),
        "utterance_words_min": min(word_counts),
        "utterance_words_max": max(word_counts),
        "talker_ttft_ms_p50": _round(percentile(ttfts, 50)),
        "talker_ttft_ms_p95": _round(percentile(ttfts, 95)),
        "talker_ttft_ms_max": _round(max(ttfts, default=None)),
        "talker_decode_tok_s": round(tokens / decode_s, 1) if decode_s else None,
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
    }
