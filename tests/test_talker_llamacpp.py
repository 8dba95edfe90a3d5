"""The real shipped GGUF through the llama.cpp Talker and the CLI (loads in ~1 s)."""

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from convfill.errors import TalkerLoadError
from convfill.prompt import PhraseContext
from convfill.talkers.llamacpp import LlamaCppTalker, _shared, default_gguf_path

pytestmark = pytest.mark.model
ROOT = Path(__file__).resolve().parents[1]


async def _say(talker, ctx, max_tokens=48):
    return "".join([p async for p in talker.stream(ctx, max_tokens)])


def test_default_gguf_is_the_shipped_file():
    p = default_gguf_path()
    assert p.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and p.stat().st_size > 50_000_000


async def test_generates_one_line_phrase_and_stops_at_end_marker(real_talker):
    text = await _say(real_talker, PhraseContext("Who wrote Pride and Prejudice?",
                                                 "Jane Austen wrote Pride and Prejudice in 1813."))
    assert "Austen" in text
    assert "\n" not in text and "<|im_end|>" not in text and "<|im_start|>" not in text


async def test_greedy_is_deterministic_and_respects_token_cap(real_talker):
    ctx = PhraseContext("Tell me a long story about dragons and castles.")
    a = await _say(real_talker, ctx, 5)
    b = await _say(real_talker, ctx, 5)
    assert a == b and 0 < len(a.split()) <= 6


async def test_closing_the_stream_stops_generation_quickly(real_talker):
    # 400 tokens would take ~4 s; closing after the first token must free the model after the current token
    # (~10 ms on an idle machine; the bound leaves room for a loaded CI box, see also test_engine's 100 ms
    # barge-in test on the wall clock).
    ctx = PhraseContext("Describe every planet of the solar system in detail.")
    agen = real_talker.stream(ctx, 400)
    await anext(agen)
    t0 = time.perf_counter()
    await agen.aclose()
    idle = await asyncio.to_thread(real_talker._slots.wait_idle, 2.0)
    assert idle and time.perf_counter() - t0 < 1.0


async def test_a_phrase_restating_its_chunk_takes_fewer_decode_steps_than_tokens_and_says_the_same(
        real_talker, monkeypatch):
    """Speculative decoding (`lookup`): the guesses copied from the chunk are checked in batches, so the phrase
    takes fewer decode steps than one per token, says what one token per step says, and leaves in the cache
    the phrase as said (no guess after it), for the next phrase's prefix match. Sampled fillers are not
    drafted."""
    from convfill.talkers import llamacpp

    steps: list[int] = []
    decode = llamacpp._decode

    def counting(llm, batch, every_row):
        steps.append(len(batch))
        return decode(llm, batch, every_row)

    monkeypatch.setattr(llamacpp, "_decode", counting)
    ctx = PhraseContext("Who wrote Pride and Prejudice?",
                        "Jane Austen wrote Pride and Prejudice. It was published in 1813.")
    monkeypatch.setattr(real_talker, "draft", 0)
    one_by_one = await _say(real_talker, ctx)
    single, steps[:] = list(steps), []
    monkeypatch.setattr(real_talker, "draft", 3)
    drafted = await _say(real_talker, ctx)
    assert drafted == one_by_one and "Austen" in drafted
    assert set(single) == {1} and max(steps) > 1 and len(steps) < len(single)
    prompt = real_talker.tokenize(real_talker.prompt(ctx))
    held = real_talker.cached_tokens(real_talker.prompt(ctx))
    assert held[: len(prompt)] == prompt
    assert real_talker.llm.detokenize(held[len(prompt):]).decode() == drafted
    steps.clear()
    filler = await _say(real_talker, PhraseContext("Tell me something about Jane Austen's novels."))
    assert filler and set(steps) == {1}


def test_missing_gguf_is_a_clear_error(tmp_path):
    with pytest.raises(TalkerLoadError, match="not found"):
        LlamaCppTalker(tmp_path / "nope.gguf")


def test_cli_turn_oracle_filler_then_knowledge():
    out = subprocess.run(
        [sys.executable, "-m", "convfill", "turn", "Who wrote Pride and Prejudice?", "--reasoner", "oracle",
         "--knowledge", "Jane Austen wrote Pride and Prejudice in 1813.", "--json"],
        capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    events = [json.loads(line) for line in out.stdout.splitlines()]
    assert all("type" in e and "t_ms" in e for e in events)
    phrases = [e for e in events if e["type"] == "phrase_ended"]
    assert phrases[0]["source"] == "sil"
    assert phrases[1]["source"] == "chunk" and "Austen" in phrases[1]["text"]
    assert events[-1]["type"] == "turn_ended" and events[-1]["reason"] == "done"


def test_cli_errors_are_one_line_exit_1():
    out = subprocess.run([sys.executable, "-m", "convfill", "turn", "hi", "--reasoner", "nope"],
                         capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 1 and out.stderr.strip().startswith("Error: Unknown reasoner 'nope'")
    assert "local" in out.stderr and "Traceback" not in out.stderr


async def test_warm_fills_the_cache_with_the_next_prompts_prefix(real_talker):
    ctx = PhraseContext("And when was that?", prev_user="Who wrote Hamlet?", prev_reply="Shakespeare did.")
    await real_talker.warm(ctx)
    prompt_tokens = real_talker.tokenize(real_talker.prompt(ctx))
    cached = real_talker.cached_tokens(real_talker.prompt(ctx))
    assert len(cached) > 10 and prompt_tokens[: len(cached)] == cached
    assert len(cached) < len(prompt_tokens)  # the new user text is not there yet
    text = await _say(real_talker, ctx)  # generation after a warm-up still works
    assert text and "\n" not in text


async def test_default_talker_is_the_seed_adapter_and_answers_terse_questions(real_talker):
    """The offline default = shipped base + seed-trained ConvFill LoRA (convfill/assets), ConvFill layout.
    A search-style question with a terse oracle chunk: the answer, not the question repeated."""
    assert real_talker.style == "convfill" and "talker-seed-lora" in real_talker.name
    text = await _say(real_talker, PhraseContext("who wrote pride and prejudice",
                                                 "The answer is Jane Austen."))
    assert "Austen" in text and "\n" not in text
    assert not text.lower().startswith("who wrote")  # the first adapter echoed such questions


def test_adapter_choice_none_gives_the_bare_prompted_base_and_other_models_get_no_adapter(tmp_path):
    from convfill.talkers.llamacpp import SEED_ADAPTER, resolve_adapter

    t = LlamaCppTalker(lora_path="none", temperature=0.0)
    assert t.style == "prompted" and "lora" not in t.name
    t.close()
    assert resolve_adapter("auto") == SEED_ADAPTER == resolve_adapter("seed")
    assert resolve_adapter("auto", tmp_path / "mine.gguf") is None  # trained for the shipped base only
    assert resolve_adapter(None) is None and resolve_adapter("none") is None
    assert resolve_adapter("x.gguf") == Path("x.gguf")


async def test_visitors_at_once_get_a_context_each_and_take_turns_token_by_token(real_talker):
    ctxs = [PhraseContext("Who wrote Pride and Prejudice?", "Jane Austen wrote Pride and Prejudice in 1813."),
            PhraseContext("What is the capital of Australia?", "Canberra is the capital of Australia."),
            PhraseContext("How many moons does Mars have?", "Mars has two moons, Phobos and Deimos.")]
    alone = [await _say(real_talker, c, 16) for c in ctxs]
    heard: list[tuple[int, str]] = []

    async def say(i):
        async for piece in real_talker.stream(ctxs[i], 16):
            heard.append((i, piece))

    await asyncio.gather(*(say(i) for i in range(3)))
    together = ["".join(p for who, p in heard if who == i) for i in range(3)]
    assert together == alone  # no visitor's cache was disturbed by another's tokens
    who = [w for w, _ in heard]
    assert who.index(2) < len(who) - 1 - who[::-1].index(0)  # the third began before the first ended
    for c in ctxs:  # each prompt is held whole in a context of its own, ready for that visitor's next phrase
        prompt = real_talker.tokenize(real_talker.prompt(c))
        assert real_talker.cached_tokens(real_talker.prompt(c))[: len(prompt)] == prompt
    assert 3 <= len(real_talker._contexts) <= real_talker._slots.limit
    assert all(c._model is real_talker.llm._model for c in real_talker._contexts)  # one model, not a copy each


async def test_visitors_taking_turns_keep_their_own_context_even_when_questions_start_alike(model_home):
    """Two sessions talk in turns through their own engines on one Talker with two contexts made ahead. Each
    turn (its phrases and the warm-up after it) stays in the visitor's own context, though B's question starts
    like A's ("What is the capital of") and would match A's cache best: B must not throw A's turn away."""
    from convfill.config import EngineConfig
    from convfill.engine import Engine
    from convfill.events import TurnEnded

    talker = LlamaCppTalker(temperature=0.0, slots=4)
    try:
        await asyncio.wrap_future(talker.reserve(2))
        used: list[tuple[str, int]] = []
        generate_in = talker.generate_in

        def recording(slot, prompt, *args):
            used.append((prompt.rsplit("<|im_start|>user\n", 1)[1].split("<|im_end|>", 1)[0], slot))
            return generate_in(slot, prompt, *args)

        talker.generate_in = recording
        config = EngineConfig(max_fillers=1, max_phrase_tokens=8)
        a, b = Engine(talker, None, config), Engine(talker, None, config)
        turns = [(a, "What is the capital of Australia?"), (b, "What is the capital of France?"),
                 (a, "And its population?"), (b, "And its river?")]
        for engine, text in turns:
            events = [ev async for ev in engine.turn(text)]
            assert isinstance(events[-1], TurnEnded) and events[-1].reason == "done"
            await engine._warming  # the warm-up of the next turn's prefix, in the same context
        slot = dict(used)
        assert [u for u, _ in used] == [t for _, t in turns]
        assert slot[turns[0][1]] == slot[turns[2][1]] != slot[turns[1][1]] == slot[turns[3][1]]
        assert len(talker._contexts) == 2  # the two made ahead; none made for turns
        # A's context still starts with A's conversation: its next turn re-evaluates only the new words
        a_next = talker.prompt(a._phrase_context("Thanks!", None, ()))
        held = talker._contexts[slot[turns[0][1]]]
        shared = _shared(held.input_ids[: held.n_tokens], talker.tokenize(a_next))
        assert shared >= len(talker.tokenize(a_next.split("Thanks!")[0])) - 1  # all up to A's new words
    finally:
        talker.close()


@pytest.mark.parametrize("name", ["q8_0", "q8_0-flash", "bf16"])
def test_the_weight_type_is_the_probes_choice_unless_one_is_asked_for(real_talker, monkeypatch, name):
    import threading

    import llama_cpp

    from convfill.talkers import probe, weights
    from convfill.talkers.llamacpp import FLASH_ENV

    enabled = {True: llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED, False: llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED}
    chosen = weights.CANDIDATES[probe.llamacpp_status().weights]
    d = real_talker.describe()
    assert d["weights"] == chosen.name and d["flash_attn"] is chosen.flash_attn
    assert real_talker.llm.model_path.endswith(f".{chosen.qtype.lower()}.gguf")
    assert real_talker.llm.context_params.flash_attn_type == enabled[chosen.flash_attn]
    monkeypatch.setenv(weights.WEIGHTS_ENV, name)
    t = LlamaCppTalker(temperature=0.0, slots=2)
    try:
        want = weights.CANDIDATES[name]
        assert t.describe()["weights"] == name and t.llm.model_path.endswith(f".{want.qtype.lower()}.gguf")
        assert t.describe()["flash_attn"] is want.flash_attn
        ctx = PhraseContext("Who wrote Pride and Prejudice?", "Jane Austen wrote Pride and Prejudice in 1813.")
        assert "Austen" in "".join(t.generate_in(1, t.prompt(ctx), 24, threading.Event()))  # a sibling context too
        assert t._contexts[1].context_params.flash_attn_type == enabled[want.flash_attn]
    finally:
        t.close()
    monkeypatch.setenv(FLASH_ENV, "0" if want.flash_attn else "1")  # the attention setting can be forced
    t = LlamaCppTalker(temperature=0.0, slots=1)
    try:
        assert t.describe()["flash_attn"] is not want.flash_attn
        assert t.llm.context_params.flash_attn_type == enabled[not want.flash_attn]
    finally:
        t.close()


def test_an_unknown_weight_type_is_a_clear_error(monkeypatch):
    from convfill.errors import TalkerLoadError
    from convfill.talkers import weights

    monkeypatch.setenv(weights.WEIGHTS_ENV, "q2_k")
    with pytest.raises(TalkerLoadError, match="auto, q8_0, q8_0-flash, bf16"):
        weights.resolve(None)


async def test_a_prompt_evaluated_again_or_word_by_word_holds_what_one_batch_holds(real_talker):
    """Typing, or a phrase said after the prompt, must not change what the Talker says next: llama.cpp
    computes a one-token batch with other kernels (its entries round differently, measured), so a prompt
    token is never evaluated alone (`_batch_start`); the logits then equal one batch's bit for bit."""
    import threading

    import llama_cpp
    import numpy as np

    from convfill.talkers.llamacpp import _batch_start

    assert [_batch_start(c, 10) for c in (0, 5, 8, 9, 10)] == [0, 5, 8, 8, 10]

    def logits(llm):
        row = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
        return np.ctypeslib.as_array(row, shape=(llm.n_vocab(),)).copy()

    question = "Which of the three bridges over the river near my aunt's farm is the oldest one?"
    prompt = real_talker.prompt(PhraseContext(question))
    tokens = real_talker.tokenize(prompt)
    await real_talker.prefill(PhraseContext("Okay."))
    words = question.split()
    for i in range(1, len(words) + 1):  # as the textbox's input events arrive
        await real_talker.prefill(PhraseContext(" ".join(words[:i])))
    llm = next(c for c in real_talker._contexts if c.input_ids[: c.n_tokens].tolist() == tokens)
    typed = logits(llm)

    def cold_then_a_phrase():  # the prompt after the header in one batch; then a phrase said after it
        llm.n_tokens = real_talker._header_tokens
        llm.eval(tokens[llm.n_tokens:])
        once = logits(llm)
        said = "".join(real_talker.generate_in(real_talker._contexts.index(llm), prompt, 6, threading.Event()))
        return once, said

    once, said = await real_talker._on_model_thread(cold_then_a_phrase)
    assert np.array_equal(once, typed), float(np.abs(once - typed).max())
    assert said and llm.n_tokens > len(tokens)  # the cache holds the prompt and more: re-evaluated below
    await real_talker.prefill(PhraseContext(question))
    assert llm.input_ids[: llm.n_tokens].tolist() == tokens
    again = logits(llm)
    assert np.array_equal(once, again), float(np.abs(once - again).max())
