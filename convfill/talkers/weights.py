"""Which weight type (and attention kernel) the llama.cpp Talker runs on this CPU: measured, not assumed.

The same 135M model prefills at very different speeds by weight type and attention kernel depending on the
CPU's instructions: on an AMD EPYC Zen 4 (AVX-512 BF16) a ~32-token prompt takes ~40 ms in BF16 with flash
attention against ~80 ms in Q8_0 without; on a Zen 3 (AVX2 only) BF16 is the slowest and Q8_0 with flash
attention the fastest; on an Intel Xeon with AMX turned off BF16 was the slower one (docs/benchmarks.md). So
the llama.cpp probe (`probe`, a child process, once per build and CPU) times each candidate on the real
model after its crash check, all of them in turn (`Timer`), and the Talker runs the candidate with the
shortest prefill (the time to first token) among those that decode at >= 80 tokens/s (issue 21's goal; if
none does, the one that says a whole first phrase soonest, `choose`). A candidate that crashes or fails
there is not used. `CONVFILL_TALKER_WEIGHTS=q8_0|q8_0-flash|bf16` forces one.

Every candidate passed the checks a default must (docs/benchmarks.md, issue 21): the merged and the unmerged
adapter choose the same tokens on the verify prompts up to a rounding's near-tie
(`tests/test_fast_talker.py`), and QA accuracy and entailment. BF16 rounds each weight more finely than
Q8_0: its greedy phrases are closer to the unrounded model's.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass

from ..errors import TalkerLoadError


@dataclass(frozen=True)
class Weights:
    """One way to run the Talker's weights.

    Parameters:
        name: how the environment, `describe()` and the probe say it ("q8_0").
        qtype: the GGUF type the weights are converted to ("Q8_0", "BF16").
        flash_attn: llama.cpp's flash attention (its rounding is part of what was checked).
    """

    name: str
    qtype: str
    flash_attn: bool


CANDIDATES = {w.name: w for w in (Weights("q8_0", "Q8_0", False), Weights("q8_0-flash", "Q8_0", True),
                                   Weights("bf16", "BF16", True))}
DEFAULT = "q8_0"  # where nothing was measured (the probe is skipped, or no candidate finished it)
WEIGHTS_ENV = "CONVFILL_TALKER_WEIGHTS"

DECODE_GOAL_STEP_MS = 1000.0 / 80  # a decode step at 80 tokens/s
PROBE_UTTERANCES = ("Who wrote Pride and Prejudice?",
                    "How long should I boil an egg if I want the yolk a little runny?",
                    "I keep waking up at three in the morning and can't fall back asleep, what else could I try?")


def resolve(name: str | None) -> Weights:
    """The candidate called `name`; None or "auto": `CONVFILL_TALKER_WEIGHTS`, else the probe's choice."""
    text = (name or os.environ.get(WEIGHTS_ENV, "") or "auto").strip().lower()
    if text == "auto":
        from .probe import llamacpp_status

        text = llamacpp_status().weights or DEFAULT
    if text not in CANDIDATES:
        raise TalkerLoadError(f"Talker weights {text!r}: use one of auto, {', '.join(CANDIDATES)}")
    return CANDIDATES[text]


PHRASE_TOKENS = 12  # a first phrase ("Pride and Prejudice, let me see who wrote it.")


def choose(timings: dict[str, dict]) -> str | None:
    """Of the candidates the probe timed, the one with the shortest prefill among those whose decode step
    meets `DECODE_GOAL_STEP_MS`; if none does, the one that says a first phrase soonest (prefill and
    `PHRASE_TOKENS` steps: on a Zen 3 the shortest prefill, BF16's 118.5 ms against Q8_0 with flash
    attention's 127.2, within the machine's noise, decoded at 48 tokens/s against 70). None if none was
    timed."""
    timed = {k: v for k, v in timings.items() if k in CANDIDATES and {"prefill_ms", "step_ms"} <= set(v)}
    fast = [k for k, v in timed.items() if v["step_ms"] <= DECODE_GOAL_STEP_MS]
    if fast:
        return min(fast, key=lambda k: timed[k]["prefill_ms"])
    return min(timed, key=lambda k: timed[k]["prefill_ms"] + PHRASE_TOKENS * timed[k]["step_ms"], default=None)


class Timer:
    """One candidate loaded in this process (the probe's child) to be timed: `run()` adds a round,
    `result()` says what the rounds so far measured. The probe loads every candidate, then runs their rounds
    in turn, so a shared CPU's slow spells fall on all of them alike (timed one after the other, the choice
    was left to chance on a shared VM: one configuration's median moved 98 -> 116 ms between two runs)."""

    def __init__(self, weights: Weights):
        import threading

        from ..prompt import PhraseContext
        from .llamacpp import LlamaCppTalker

        self.weights = weights
        self.talker = LlamaCppTalker(weights=weights.name, flash_attn=weights.flash_attn, draft=0, slots=1)
        self.prompts = [self.talker.tokenize(self.talker.prompt(PhraseContext(u))) for u in PROBE_UTTERANCES]
        list(self.talker.generate(self.talker.prompt(PhraseContext("Hello.")), 2, threading.Event()))  # warm
        self.prefill: list[float] = []
        self.steps: list[float] = []

    def run(self) -> None:
        """One round: prefill of each probe utterance's prompt with the template header cached, then 16
        decode steps."""
        llm, header = self.talker.llm, self.talker._header_tokens
        for tokens in self.prompts:
            llm.n_tokens = header
            t0 = time.perf_counter()
            llm.eval(tokens[header:])
            self.prefill.append((time.perf_counter() - t0) * 1000.0)
        t0 = time.perf_counter()
        for i in range(16):
            llm.eval([100 + i])
        self.steps.append((time.perf_counter() - t0) * 1000.0 / 16)

    def result(self) -> dict:
        """Prefill: the median; decode step: the best round (what the CPU can do between interruptions)."""
        return {"prefill_ms": round(statistics.median(self.prefill), 1), "step_ms": round(min(self.steps), 2),
                "rounds": len(self.steps)}

    def close(self) -> None:
        self.talker.close()
