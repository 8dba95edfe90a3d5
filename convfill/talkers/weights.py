"""Which weight type (and attention kernel) the llama.cpp Talker runs on this CPU: measured, not assumed.

The same 135M model prefills at very different speeds by weight type depending on the CPU's instructions:
on an AMD EPYC (Zen 4, AVX-512 BF16) a ~32-token prompt takes ~40 ms in BF16 with flash attention against
~80 ms in Q8_0; on an Intel Xeon with AMX turned off BF16 was the slower one (docs/benchmarks.md). So the
llama.cpp probe (`probe`, a child process, once per build and CPU) times each candidate on the real
model after its crash check, and the Talker runs the candidate with the shortest prefill (the time to first
token) among those that decode at >= 80 tokens/s (issue 21's goal; among all of them if none does). A
candidate that crashes or fails there is not used. `CONVFILL_TALKER_WEIGHTS=q8_0|bf16` forces one.

Both candidates passed the checks a default must (docs/benchmarks.md, issue 21): merged and unmerged
adapters say the same on the verify prompts, and QA accuracy and entailment. BF16 rounds each weight more
finely than Q8_0: its greedy phrases are closer to the unrounded model's.
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


CANDIDATES = {w.name: w for w in (Weights("q8_0", "Q8_0", False), Weights("bf16", "BF16", True))}
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


def choose(timings: dict[str, dict]) -> str | None:
    """Of the candidates the probe timed, the one with the shortest prefill among those whose decode step
    meets `DECODE_GOAL_STEP_MS` (all of them if none does); None if none was timed."""
    timed = {k: v for k, v in timings.items() if k in CANDIDATES and {"prefill_ms", "step_ms"} <= set(v)}
    fast = [k for k, v in timed.items() if v["step_ms"] <= DECODE_GOAL_STEP_MS] or list(timed)
    return min(fast, key=lambda k: timed[k]["prefill_ms"], default=None)


def measure(weights: Weights, rounds: int = 3) -> dict:
    """Time `weights` on the default Talker in this process (the probe's child): prefill of the probe
    utterances' prompts with the template header cached (median), and one decode step (best of `rounds`
    runs of 16)."""
    import threading

    from ..prompt import PhraseContext
    from .llamacpp import LlamaCppTalker

    talker = LlamaCppTalker(weights=weights.name, flash_attn=weights.flash_attn, draft=0)
    try:
        llm, header = talker.llm, talker._header_tokens
        prompts = [talker.tokenize(talker.prompt(PhraseContext(u))) for u in PROBE_UTTERANCES]
        list(talker.generate(talker.prompt(PhraseContext("Hello.")), 2, threading.Event()))  # warm
        prefill = []
        for _ in range(rounds):
            for tokens in prompts:
                llm.n_tokens = header
                t0 = time.perf_counter()
                llm.eval(tokens[header:])
                prefill.append((time.perf_counter() - t0) * 1000.0)
        steps = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            for i in range(16):
                llm.eval([100 + i])
            steps.append((time.perf_counter() - t0) * 1000.0 / 16)
    finally:
        talker.close()
    return {"prefill_ms": round(statistics.median(prefill), 1), "step_ms": round(min(steps), 2)}
