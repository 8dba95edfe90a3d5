"""The remote Talker against a real completions server: `python -m llama_cpp.server` on 127.0.0.1 serving
the default Talker's own weights (the merged seed-adapter GGUF). It must say what the local runtime says,
run whole turns through the engine and the app, and stop when a turn is cut off."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest
from test_openai_llamacpp_server import _free_port, serve_gguf

from convfill.config import EngineConfig
from convfill.engine import Engine
from convfill.errors import TalkerLoadError
from convfill.events import PhraseEnded
from convfill.prompt import PhraseContext
from convfill.reasoners.oracle import OracleReasoner
from convfill.talkers import get_talker

pytestmark = pytest.mark.model
CONTEXTS = (PhraseContext("Who wrote Pride and Prejudice?"),
            PhraseContext("Who wrote Pride and Prejudice?", "Pride and Prejudice was written by Jane Austen.",
                          earlier=("Pride and Prejudice, let me see who wrote it.",)),
            PhraseContext("And in Fahrenheit?", "That is 212 degrees Fahrenheit.",
                          prev_user="What is the boiling point of water?",
                          prev_reply="Let me see. At sea level, water boils at 100 degrees Celsius."))


@pytest.fixture(scope="module")
def talker_server(tmp_path_factory, real_talker):
    """The local Talker's own file and attention kernel (the probe's choice on this CPU): two kernels may
    break a near-tie differently ("It was by" / "It was written by Jane Austen.")."""
    log = tmp_path_factory.mktemp("talker_server") / "server.log"
    with serve_gguf(Path(real_talker.llm.model_path), "convfill-talker", log, n_threads=2, interrupt=False,
                    flash_attn=real_talker.flash_attn) as url:
        yield url


def _say(talker, ctx, n=32) -> str:
    return "".join(talker.generate(talker.prompt(ctx), n, threading.Event())).strip()


def test_remote_talker_says_what_the_local_runtime_says(talker_server, real_talker):
    remote = get_talker("remote", model=talker_server)
    assert remote.describe()["runtime"] == "remote" and remote.server_model == "convfill-talker"
    assert remote.style == real_talker.style == "convfill"
    for ctx in CONTEXTS:
        assert _say(remote, ctx) == _say(real_talker, ctx), ctx


async def test_remote_talker_runs_turns_and_stops_when_cut_off(talker_server):
    remote = get_talker("remote", model=talker_server)
    engine = Engine(remote, OracleReasoner("Jane Austen wrote Pride and Prejudice. It came out in 1813.",
                                           first_chunk_s=0.3, gap_s=0.1), EngineConfig(max_phrase_tokens=16))
    events = [ev async for ev in engine.turn("Who wrote Pride and Prejudice?")]
    phrases = [e for e in events if isinstance(e, PhraseEnded)]
    assert phrases[0].source == "sil" and any(p.source == "chunk" and "Austen" in p.text for p in phrases)
    assert events[-1].reason == "done"
    agen = remote.stream(PhraseContext("Describe every planet of the solar system in detail."), 400)
    await anext(agen)
    t0 = time.monotonic()
    await agen.aclose()
    idle = await asyncio.to_thread(remote._slots.wait_idle, 5.0)
    assert idle and time.monotonic() - t0 < 3.0  # the stream was closed, not read to its end


async def test_one_replica_keeps_its_visitors_phrases_in_flight_at_once(talker_server):
    remote = get_talker("remote", model=talker_server)
    ctxs = [c for c in CONTEXTS if c.knowledge is not None]  # greedy phrases: the same words every time
    alone = [_say(remote, c) for c in ctxs]
    peak, running = [0], [True]

    async def watch():
        while running[0]:
            peak[0] = max(peak[0], remote._slots.busy())
            await asyncio.sleep(0.002)

    async def say(ctx):
        return "".join([p async for p in remote.stream(ctx, 32)]).strip()

    watcher = asyncio.create_task(watch())
    together = await asyncio.gather(*(say(c) for c in ctxs))
    running[0] = False
    await watcher
    assert together == alone
    assert peak[0] == len(ctxs)  # every phrase was sent at once; the server decides how to batch them


def test_the_app_serves_an_operators_remote_talker(talker_server, monkeypatch):
    from test_app import _client

    from convfill.policy import Policy
    from app import build_app
    from convfill.ui import AppConfig

    spec = f"remote:{talker_server}"
    monkeypatch.setenv("CONVFILL_TALKERS", spec)
    demo = build_app(AppConfig.from_env(policy=Policy(public=True)))
    demo.queue(default_concurrency_limit=None)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_port=_free_port(), quiet=True)
    try:
        chat, timeline, *_ = _client(url).predict(
            message="Who wrote Pride and Prejudice?", talker=spec, reasoner="oracle",
            knowledge="Jane Austen wrote Pride and Prejudice.", reasoner_delay_s=0.3, max_phrase_tokens=16,
            turn_timeout_s=120, api_name="/chat")
        assert 'data-reason="done"' in timeline and "Austen" in str(chat[-1])
        (talker,) = demo.convfill_store.db.execute("select talker from turns").fetchone()
        assert '"runtime": "remote"' in talker
    finally:
        demo.close()


def test_no_server_is_a_clear_load_error():
    with pytest.raises(TalkerLoadError, match="no Talker server answers"):
        get_talker("remote", model=f"http://127.0.0.1:{_free_port()}/v1")


def test_an_operator_sets_how_many_phrases_a_replica_keeps_in_flight(talker_server, monkeypatch):
    from convfill.errors import ConfigError

    monkeypatch.setenv("CONVFILL_REMOTE_CONCURRENCY", "3")
    remote = get_talker("remote", model=talker_server)
    assert remote._slots.limit == 3 and remote._requests._max_workers == 3
    for bad in ("0", "many", "-2", "100000"):
        monkeypatch.setenv("CONVFILL_REMOTE_CONCURRENCY", bad)
        with pytest.raises(ConfigError, match="CONVFILL_REMOTE_CONCURRENCY"):
            get_talker("remote", model=talker_server)
