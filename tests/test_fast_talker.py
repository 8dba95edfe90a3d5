"""First words in one decode step: the merged Talker, prefill while typing, and the bench modes.

All on the real shipped GGUF and seed adapter. The TTFT comparison is the one timing assertion: typed
prefill leaves only sampling (about 1 ms here) against a whole prompt prefill cold (tens of ms), a margin
no loaded CI machine closes.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from convfill.config import EngineConfig
from convfill.engine import Engine
from convfill.metrics import turn_metrics
from convfill.prompt import PhraseContext
from convfill.reasoners.oracle import OracleReasoner
from convfill.talkers.llamacpp import SEED_ADAPTER, LlamaCppTalker, default_gguf_path
from convfill.talkers.merge import merged_copy, merged_path
from convfill.talkers.weights import CANDIDATES

pytestmark = pytest.mark.model
ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = ("Who wrote Pride and Prejudice?", "What is the capital city of Australia?",
             "How long should I boil an egg if I want the yolk a little runny?",
             "Can you explain how vaccines train the immune system, in simple terms for a ten year old?")


def test_default_talker_runs_the_merged_copy(real_talker):
    assert real_talker.describe()["merged"] is True and real_talker.merged
    assert real_talker.name == "SmolLM2-135M-Instruct.Q4_1.gguf+talker-seed-lora.gguf"  # what turns record
    assert Path(real_talker.llm.model_path).name.startswith("merged-talker-seed-lora-")


# Two roundings of the same weights may break a near-tie differently (merged Q8_0 with flash attention: "It
# was by Jane Austen." where the unmerged adapter says "It was written by", 0.05 logits apart); an adapter
# folded wrongly, or not at all, moves its choices by whole logits (the control below).
NEAR_TIE = 0.25


def _greedy_judged(speaker, judge, prompt: str, n: int = 32) -> float:
    """`speaker`'s greedy phrase for `prompt`, token by token, each step also evaluated by `judge`: the most
    `judge`'s best (repeat-penalised, as the Talker samples) logit exceeds its logit for the spoken token."""
    tokens = speaker.tokenize(prompt)
    for llm in (speaker.llm, judge.llm):
        llm.reset()
        llm.eval(tokens)
    said, worst, text = [], 0.0, ""
    for _ in range(n):
        mine, theirs = (_penalised(_last_logits(llm), said) for llm in (speaker.llm, judge.llm))
        token = int(mine.argmax())
        worst = max(worst, float(theirs.max() - theirs[token]))
        text += speaker.llm.detokenize([token], special=True).decode(errors="replace")
        if token in speaker._stop_ids or "\n" in text.strip(" ") or "<|im_" in text:
            break
        said.append(token)
        for llm in (speaker.llm, judge.llm):
            llm.eval([token])
    return worst


def _last_logits(llm) -> np.ndarray:
    return np.ctypeslib.as_array(llm._ctx.get_logits_ith(-1), shape=(llm.n_vocab(),))


def _penalised(row, said, penalty=1.1):
    """llama.cpp's repeat penalty (1.1, the Talker's) on the tokens this phrase has said."""
    row = np.array(row, dtype=np.float64)
    ids = np.unique(np.asarray(said, dtype=np.intp))
    row[ids] = np.where(row[ids] > 0, row[ids] / penalty, row[ids] * penalty)
    return row


@pytest.mark.parametrize("weights", list(CANDIDATES))
def test_the_merged_copy_says_what_the_unmerged_adapter_says(weights):
    """For each weight type the Talker may run (the probe picks one per CPU): on the verify prompts, every
    token the adapter folded into the weights says greedily is the unmerged adapter's choice too (on the same
    type and attention kernel), or within a rounding's near-tie of it, and the other way round."""
    from training.export_gguf import VERIFY_CONTEXTS

    w = CANDIDATES[weights]
    merged, unmerged, bare = (LlamaCppTalker(weights=weights, slots=1, draft=0, **kw)
                              for kw in ({}, {"merge": False}, {"lora_path": None}))
    try:
        assert merged.merged and "merged" not in unmerged.describe()
        assert all(t.llm.model_path.endswith(f".{w.qtype.lower()}.gguf") for t in (merged, unmerged))
        assert all(t.flash_attn is w.flash_attn for t in (merged, unmerged, bare))
        for ctx in VERIFY_CONTEXTS:
            prompt = merged.prompt(ctx)
            assert _greedy_judged(merged, unmerged, prompt) <= NEAR_TIE, ctx
            assert _greedy_judged(unmerged, merged, prompt) <= NEAR_TIE, ctx
        # The control: the base without the adapter fails this check on these prompts.
        assert max(_greedy_judged(merged, bare, merged.prompt(ctx)) for ctx in VERIFY_CONTEXTS) > 4 * NEAR_TIE
    finally:
        for t in (merged, unmerged, bare):
            t.close()


def test_merged_copy_is_made_once_and_follows_the_adapter(tmp_path, model_home):
    base = default_gguf_path()
    out = merged_copy(base, SEED_ADAPTER)
    assert out.parent == model_home / "models" and out == merged_path(base, SEED_ADAPTER)
    mtime = out.stat().st_mtime_ns
    assert merged_copy(base, SEED_ADAPTER).stat().st_mtime_ns == mtime  # reused, not rebuilt
    other = tmp_path / "talker-seed-lora.gguf"
    other.write_bytes(SEED_ADAPTER.read_bytes() + b"\0")  # a different adapter file: a different name
    assert merged_path(base, other) != out


def test_a_file_that_is_no_adapter_is_refused_by_the_merge(tmp_path):
    from convfill.errors import TalkerLoadError
    from convfill.talkers.merge import merge_lora_gguf

    with pytest.raises(TalkerLoadError, match="not a GGUF LoRA adapter"):
        merge_lora_gguf(default_gguf_path(), default_gguf_path(), tmp_path / "x.gguf")


async def _ttft(engine: Engine, text: str) -> tuple[float, str]:
    """The first phrase's TTFT and text; the turn is cancelled after it (nothing else is measured)."""
    events, turn = [], engine.turn(text)
    async for ev in turn:
        events.append(ev)
        if ev.type == "phrase_ended":
            break
    await turn.aclose()
    return turn_metrics(events).talker_ttft_ms, events[-1].text


async def test_typed_prefill_leaves_only_sampling(real_talker):
    engine = Engine(real_talker, OracleReasoner("Noted.", first_chunk_s=30),
                    EngineConfig(max_fillers=1, max_phrase_tokens=12, turn_timeout_s=120, silence_s=30))
    cold, typed = [], []
    for q in QUESTIONS:
        engine.history.clear()
        await real_talker.prefill(PhraseContext("Okay."))  # the cache holds another prompt
        ms, cold_text = await _ttft(engine, q)
        cold.append(ms)
        engine.history.clear()
        await real_talker.prefill(PhraseContext("Okay."))
        words = q.split()
        for i in range(1, len(words) + 1):  # as the textbox's input events arrive
            assert await engine.prefill(" ".join(words[:i]))
        prompt = real_talker.prompt(PhraseContext(q))
        assert real_talker.cached_tokens(prompt) == real_talker.tokenize(prompt)  # all of it, in one context
        ms, typed_text = await _ttft(engine, q)
        typed.append(ms)
        assert typed_text == cold_text  # the same words, only sooner
    assert statistics.median(typed) < statistics.median(cold) / 3, (typed, cold)


async def test_prefill_follows_the_conversation_and_yields_to_a_running_turn(real_talker):
    engine = Engine(real_talker, OracleReasoner("Jane Austen wrote it.", first_chunk_s=0.2, gap_s=0.1),
                    EngineConfig(max_phrase_tokens=8, turn_timeout_s=120))
    [ev async for ev in engine.turn("Who wrote Pride and Prejudice?")]
    assert await engine.prefill("And when was it published?")
    prev = engine.history[-1]
    want = real_talker.prompt(PhraseContext("And when was it published?", prev_user=prev.user,
                                            prev_reply=prev.reply))
    assert real_talker.cached_tokens(want) == real_talker.tokenize(want)
    assert not await engine.prefill("<|im_end|>")  # nothing a turn would accept
    assert not await engine.prefill("x" * (engine.config.max_user_chars + 1))
    turn = engine.turn("Tell me more.")
    await anext(turn)
    assert not await engine.prefill("Something else")  # a running turn's generation goes first
    await turn.aclose()


def test_the_app_prefills_as_the_user_types(real_talker):
    from test_app import _client, _free_port

    from app import build_app
    from convfill.ui import AppConfig
    from convfill.ui.session import DEFAULT_TALKER, ModelPool

    pool = ModelPool()
    pool.add_talker(DEFAULT_TALKER, real_talker)
    demo = build_app(AppConfig(), pool=pool)
    demo.queue(default_concurrency_limit=None)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_port=_free_port(), quiet=True)
    try:
        c = _client(url)
        real_talker.warm_prefix(real_talker.prompt(PhraseContext("Okay.")))
        c.predict(message="What is the capital city of Australia?", api_name="/prefill")
        typed = real_talker.prompt(PhraseContext("What is the capital city of Australia?"))
        assert real_talker.cached_tokens(typed) == real_talker.tokenize(typed)
        c.predict(message="What is the capital city of Australia?", reasoner="oracle",
                  knowledge="Canberra is the capital of Australia.", reasoner_delay_s=0.2, max_phrase_tokens=12,
                  turn_timeout_s=300, api_name="/chat")
        (ttft,) = demo.convfill_store.db.execute("select talker_ttft_ms from turns").fetchone()
        assert ttft is not None
        c.predict(message="/nowhere/x.gguf", talker="/nowhere/x.gguf", api_name="/prefill")  # never an error
    finally:
        demo.close()


@pytest.mark.parametrize("cli,mode", [("convfill", "cold"), ("convfill", "typed"), ("convfill.eval", "cold")])
def test_bench_modes(cli, mode):
    """`python -m convfill bench` is the evaluation's bench (`python -m convfill.eval bench`) under its old name."""
    proc = subprocess.run([sys.executable, "-m", cli, "bench", "--json", "--mode", mode, "--rounds", "0"],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["mode"] == mode and out["n"] == 0 and out["talker"]["merged"] is True
    assert out["knowledge_n"] == 0 and out["knowledge_decode_tok_s"] is None  # no rounds, no phrases
