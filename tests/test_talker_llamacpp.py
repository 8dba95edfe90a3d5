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
from convfill.talkers.llamacpp import LlamaCppTalker, default_gguf_path

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
    ctx = PhraseContext("Describe every planet of the solar system in detail.")
    agen = real_talker.stream(ctx, 400)
    await anext(agen)
    t0 = time.perf_counter()
    await agen.aclose()
    # the worker thread releases the model lock after its current token
    acquired = await asyncio.to_thread(real_talker._lock.acquire, True, 1.0)
    assert acquired and time.perf_counter() - t0 < 0.1
    real_talker._lock.release()


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
