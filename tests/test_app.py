"""The Gradio app: pure renderers and session logic (fast), then the launched app driven by gradio_client.

The app tests start the real app in-process on a free port, with the real GGUF Talker and the oracle
Reasoner (short delays), and talk to it through its public API exactly as a remote client would.
"""

from __future__ import annotations

import re
import socket
import sqlite3
import time
from contextlib import closing, contextmanager

import pytest

from convfill.clock import FakeClock
from convfill.engine import Engine
from convfill.events import ChunkArrived, FirstToken, PhraseDelta, PhraseEnded, PhraseStarted, TurnStarted
from convfill.testing import ScriptedReasoner, ScriptedTalker, run_turn
from convfill.talkers import TalkerSpec
from convfill.ui.session import BASE_TALKER, DEFAULT_TALKER, ChatSession, ModelPool, TurnSettings
from convfill.ui.timeline import chunk_colour, render_timeline
from convfill.ui.view import REASONER_TITLE, TurnView, render_metrics

KNOWLEDGE = "Jane Austen wrote Pride and Prejudice. It was first published in 1813."


async def _scripted_events(chunks=("Paris is the capital of France.", "It has two million people."),
                           delays=(1.5, 0.3)):
    clock = FakeClock()
    engine = Engine(ScriptedTalker(clock=clock), ScriptedReasoner(list(chunks), delays=list(delays), clock=clock),
                    clock=clock)
    return await run_turn(engine, "What is the capital of France?")


# ----------------------------------------------------------------------------------------- timeline
async def test_timeline_has_both_lanes_and_links_each_phrase_to_its_chunk():
    events = await _scripted_events()
    svg = render_timeline(events)
    assert svg.count("<svg") == 1 and 'data-lane="reasoner"' in svg and 'data-lane="talker"' in svg
    chunks = [e for e in events if isinstance(e, ChunkArrived)]
    ended = [e for e in events if isinstance(e, PhraseEnded)]
    assert len(re.findall(r'class="cf-chunk"', svg)) == len(chunks) == 2
    assert len(re.findall(r'class="cf-phrase"', svg)) == len(ended)
    for p in ended:
        m = re.search(rf'<g class="cf-phrase" data-phrase="{p.phrase_index}" data-source="(\w+)" '
                      rf'data-chunk="(\d*)" data-state="done"><title>([^<]*)</title>', svg)
        assert m, p
        assert m.group(1) == p.source
        assert p.text in m.group(3)  # hover shows the phrase text
        if p.source == "chunk":
            # a link in the chunk's colour joins the chunk mark and this phrase
            assert f'class="cf-link" data-phrase="{p.phrase_index}" data-chunk="{p.chunk_index}"' in svg
            assert f"from #{p.chunk_index}" in svg
            assert chunk_colour(p.chunk_index) in svg
    assert any(p.source == "sil" for p in ended) and "&lt;sil&gt;" in svg
    assert "Paris is the capital of France." in svg  # chunk hover text
    assert 'class="cf-turn-end" data-reason="done"' in svg


async def test_timeline_marks_running_phrase_and_scales_axis():
    events = await _scripted_events()
    # cut the turn right after the first token of the last phrase: that phrase is still running
    last_start = max(i for i, e in enumerate(events) if isinstance(e, PhraseStarted))
    cut = next(i for i in range(last_start, len(events)) if isinstance(events[i], FirstToken))
    svg = render_timeline(events[:cut + 1])
    assert 'data-state="running"' in svg and "cf-turn-end" not in svg
    later = render_timeline(events[:cut + 1], now_ms=events[cut].t_ms + 10_000)
    assert 'data-now-ms="%d"' % round(events[cut].t_ms + 10_000) in later
    assert ">10 s<" in later or ">12 s<" in later  # axis ticks follow the span


def test_timeline_escapes_text_and_renders_empty_turn():
    evil = '<script>alert(1)</script> & "q"'
    events = [TurnStarted(0.0, "t", "hi", 0.0), ChunkArrived(5.0, 0, evil),
              PhraseStarted(6.0, 0, "chunk", 0), FirstToken(7.0, 0), PhraseDelta(7.0, 0, evil)]
    svg = render_timeline(events)
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    empty = render_timeline([])
    assert 'data-lane="reasoner"' in empty and 'data-lane="talker"' in empty and "cf-phrase" not in empty


# ------------------------------------------------------------------------------------- view, metrics
async def test_turn_view_separates_reasoner_knowledge_from_talker_words():
    events = await _scripted_events()
    view = TurnView("What is the capital of France?", "oracle")
    for i, ev in enumerate(events):
        view.apply(ev)
        if isinstance(ev, ChunkArrived) and ev.chunk_index == 0:
            user, reasoner, talker = view.messages()
            assert reasoner["metadata"]["status"] == "pending"  # still streaming
    user, reasoner, talker = view.messages()
    assert user == {"role": "user", "content": "What is the capital of France?"}
    assert reasoner["metadata"]["title"].startswith(REASONER_TITLE) and "oracle" in reasoner["metadata"]["title"]
    assert "status" not in reasoner["metadata"] and "2 chunk(s), done" == reasoner["metadata"]["log"]
    assert "Paris is the capital of France." in reasoner["content"]
    assert "metadata" not in talker and "So, Paris is the capital of France." in talker["content"]
    assert "Paris is the capital" not in talker["content"].split("So, ")[0]  # knowledge only via phrases


async def test_failed_reasoner_shows_in_its_message_while_the_talker_says_so():
    from convfill.config import EngineConfig
    from convfill.errors import ReasonerError

    clock = FakeClock()
    engine = Engine(ScriptedTalker(clock=clock),
                    ScriptedReasoner([], error=ReasonerError("HTTP 429 from provider", "rate_limit"), clock=clock),
                    clock=clock)
    view = TurnView("hello", "openai")
    for ev in await run_turn(engine, "hello"):
        view.apply(ev)
    _, reasoner, talker = view.messages()
    assert "reasoner error (rate_limit): HTTP 429 from provider" in reasoner["content"]
    assert reasoner["metadata"]["log"] == "0 chunk(s), error"
    assert talker["content"].endswith(EngineConfig().error_phrase)  # honest phrase after the filler
    assert 'class="cf-error" data-where="reasoner"' in render_timeline(view.events)
    assert 'data-source="error"' in render_timeline(view.events)


async def test_metrics_table_uses_turn_metrics():
    from convfill.metrics import turn_metrics

    events = await _scripted_events()
    m = turn_metrics(events)
    table = render_metrics(events)
    assert f"{m.talker_ttft_ms:.0f} ms" in table and f"{m.reasoner_first_chunk_ms:.0f} ms" in table
    assert f"{m.n_fillers} / {m.n_knowledge_phrases} / {m.n_chunks}" in table and ">done<" in table
    assert "running" in render_metrics(events[:5])


# ------------------------------------------------------------------------------------------ session
def test_talker_spec_and_settings():
    box = TalkerSpec.from_box
    assert box(DEFAULT_TALKER) == TalkerSpec("llamacpp", None) == box("")
    assert box(BASE_TALKER) == TalkerSpec("llamacpp", None, lora="none")
    assert box("/m/x.GGUF") == TalkerSpec("llamacpp", "/m/x.GGUF")
    assert box("vysri/SmolLM360M-IT-ConvFill") == TalkerSpec("transformers", "vysri/SmolLM360M-IT-ConvFill")
    assert box("transformers:/m/x.gguf") == TalkerSpec("transformers", "/m/x.gguf")
    s = TurnSettings(api_key="sk-secret-123", engine={"silence_s": 0.5, "max_fillers": 2.0})
    assert "sk-secret" not in repr(s)
    cfg = s.engine_config()
    assert cfg.silence_s == 0.5 and cfg.max_fillers == 2 and isinstance(cfg.max_fillers, int)
    from convfill.errors import ConfigError

    with pytest.raises(ConfigError, match="silence_s"):
        TurnSettings(engine={"silence_s": 0.0}).engine_config()


async def test_sessions_are_isolated_and_cancelled_turns_are_persisted(tmp_path):
    from labeling.store import LabelStore

    store = LabelStore(tmp_path / "s.db")
    pool = ModelPool()
    pool.add_talker(DEFAULT_TALKER, ScriptedTalker(per_token_s=0.01))
    a, b = ChatSession(pool, store), ChatSession(pool, store)
    fast = TurnSettings(knowledge="Cats purr.", reasoner_delay_s=0.05, oracle_gap_s=0.0)
    await a.prepare(fast)
    await b.prepare(TurnSettings(knowledge="Dogs bark.", reasoner_delay_s=0.05))
    [ev async for ev in a.run("Tell me about cats")]
    [ev async for ev in b.run("Tell me about dogs")]
    assert [m["content"] for m in a.messages() if m["role"] == "user"] == ["Tell me about cats"]
    assert "Dogs bark." not in str(a.messages()) and "Cats purr." not in str(b.messages())
    assert a.conversation_id != b.conversation_id and len(a.engine.history) == 1
    # Stop: the turn ends at once with reason "cancelled", the view shows it, the store has it.
    slow = TurnSettings(knowledge="Cats sleep a lot.", reasoner_delay_s=30, engine={"silence_s": 0.2,
                                                                                    "max_fillers": 20})
    await a.prepare(slow)
    run = a.run("And how long do they sleep?")
    async for ev in run:
        if isinstance(ev, PhraseEnded):
            break
    t0 = time.monotonic()
    await a.cancel()
    assert time.monotonic() - t0 < 0.5
    await run.aclose()
    assert a.turns[-1].end_reason == "cancelled" and "_[cancelled]_" in a.messages()[-1]["content"]
    turns = store.turns(a.conversation_id)
    assert [t["end_reason"] for t in turns] == ["done", "cancelled"]
    assert store.phrases(turns[1]["id"])  # the phrases said before Stop are kept


async def test_a_turn_that_cannot_be_saved_says_why(tmp_path):
    from labeling.store import LabelStore

    store = LabelStore(tmp_path / "locked.db", busy_timeout_ms=200)
    pool = ModelPool()
    pool.add_talker(DEFAULT_TALKER, ScriptedTalker(per_token_s=0.001))
    s = ChatSession(pool, store)
    await s.prepare(TurnSettings(knowledge="Cats purr.", reasoner_delay_s=0.01))
    other = sqlite3.connect(tmp_path / "locked.db", isolation_level=None)
    other.execute("begin exclusive")  # another writer holds the database
    try:
        events = [ev async for ev in s.run("Tell me about cats")]
    finally:
        other.execute("rollback")
        other.close()
    assert events[-1].type == "turn_ended" and s.turns[-1].end_reason == "done"  # the turn itself went fine
    assert s.save_error and "locked" in s.save_error and "nothing was written" in s.save_error
    [ev async for ev in s.run("And dogs?")]
    assert s.save_error is None and len(store.turns(s.conversation_id)) == 1


async def test_missing_oracle_knowledge_and_bad_talker_are_clean_errors():
    from convfill.errors import InputError, TalkerLoadError

    s = ChatSession(ModelPool(), None)
    with pytest.raises(TalkerLoadError, match="not found"):
        await s.prepare(TurnSettings(talker="/nowhere/model.gguf", knowledge="x."))
    s.pool.add_talker(DEFAULT_TALKER, ScriptedTalker())
    with pytest.raises(InputError, match="Oracle knowledge"):
        await s.prepare(TurnSettings(knowledge="  "))
    from convfill.errors import ConfigError

    with pytest.raises(ConfigError, match="not available.*anthropic, gemini, local, openai, oracle"):
        await s.prepare(TurnSettings(reasoner="nonexistent"))


# ---------------------------------------------------------------------------------- the launched app
def _free_port() -> int:
    with closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def launched(config, pool=None, **launch_kw):
    """The app for `config` launched in-process on a free port: yields (demo, url); always closed."""
    from app import build_app

    demo = build_app(config, pool=pool)
    demo.queue(default_concurrency_limit=None)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_port=_free_port(), quiet=True, **launch_kw)
    try:
        yield demo, url
    finally:
        demo.close()


@pytest.fixture
def app(real_talker):
    """The app launched in-process on a free port (db from the autouse CONVFILL_DB), shared real Talker."""
    from convfill.ui import AppConfig

    pool = ModelPool()
    pool.add_talker(DEFAULT_TALKER, real_talker)
    with launched(AppConfig.from_env(), pool) as demo_url:
        yield demo_url


def _client(url):
    from gradio_client import Client

    return Client(url, verbose=False, download_files=False)


def _talker_text(messages) -> str:
    last = messages[-1]
    assert last["role"] == "assistant" and last["metadata"] is None
    return "".join(c["text"] for c in last["content"] if c.get("type") == "text")


# Short phrases and a generous turn timeout: a shared CI CPU can be many times slower than a laptop.
TURN = dict(reasoner="oracle", knowledge=KNOWLEDGE, reasoner_delay_s=0.6, oracle_gap_s=0.2,
            max_phrase_tokens=16, turn_timeout_s=600, api_name="/chat")


@pytest.mark.model
def test_chat_turn_streams_phrases_and_timeline_and_is_persisted(app):
    demo, url = app
    c = _client(url)
    job = c.submit(message="Who wrote Pride and Prejudice?", api_key="sk-test-never-stored-42", **TURN)
    job.result(timeout=120)
    updates = job.outputs()
    assert len(updates) >= 5  # streamed, not one final answer
    texts = [_talker_text(u[0]) for u in updates]
    grown = [t for t in texts if t not in ("…", "")]
    assert len(set(grown)) >= 3, "the Talker's words arrive piece by piece"
    assert any('data-state="running"' in u[1] for u in updates), "the timeline is drawn while phrases run"
    assert updates[0][3] == "" and updates[-1][3] == {"__type__": "update"}  # cleared once, then left alone
    chat, timeline, metrics, _ = updates[-1]
    user, reasoner, talker = chat
    assert user["role"] == "user" and "Pride and Prejudice" in user["content"][0]["text"]
    assert reasoner["metadata"]["title"].startswith(REASONER_TITLE)
    assert "Jane Austen wrote Pride and Prejudice." in reasoner["content"][0]["text"]
    # the timeline: both lanes, two chunks, a filler and knowledge phrases linked to their chunks
    assert 'data-lane="reasoner"' in timeline and 'data-lane="talker"' in timeline
    assert timeline.count('class="cf-chunk"') == 2
    assert 'data-source="sil"' in timeline and 'data-source="chunk"' in timeline and "cf-link" in timeline
    assert 'data-reason="done"' in timeline and "Talker TTFT" in metrics and ">done<" in metrics
    # the store has the turn: phrases (a filler, then knowledge), chunks, models used, no key
    store = demo.convfill_store
    conv = store.db.execute("select id from conversations").fetchall()
    assert len(conv) == 1
    (turn,) = store.turns(conv[0][0])
    phrases = store.phrases(turn["id"])
    assert phrases[0]["source"] == "sil" and any(p["source"] == "chunk" for p in phrases)
    said = _talker_text(chat)
    for p in phrases:
        assert p["text"] in said
    assert "Austen" in " ".join(p["text"] for p in phrases if p["source"] == "chunk")
    assert '"runtime": "llamacpp"' in turn["talker"] and '"reasoner": "oracle"' in turn["reasoner"]
    assert [c["text"] for c in store.chunks(turn["id"])] == KNOWLEDGE.replace(". ", ".\n").splitlines()
    db_bytes = b"".join(p.read_bytes() for p in store.path.parent.glob(store.path.name + "*"))
    assert b"sk-test-never-stored-42" not in db_bytes


@pytest.mark.model
def test_two_clients_never_share_state_and_stop_cancels(app):
    demo, url = app
    a, b = _client(url), _client(url)
    ja = a.submit(message="Who wrote Pride and Prejudice?", **TURN)
    jb = b.submit(message="Tell me about Paris.", reasoner="oracle", knowledge="Paris is the capital of France.",
                  reasoner_delay_s=0.3, max_phrase_tokens=16, turn_timeout_s=600, api_name="/chat")
    ca, cb = ja.result(timeout=120)[0], jb.result(timeout=120)[0]
    assert "Paris" not in str(ca[0]) and "Austen" not in str(cb[0]) and "Austen" not in str(cb[1])
    assert [m["role"] for m in ca] == [m["role"] for m in cb] == ["user", "assistant", "assistant"]
    # a long turn for A (Reasoner 10 s away, frequent fillers); Stop ends it at once and it is stored
    long_turn = a.submit(message="And when was it published?", reasoner="oracle", knowledge=KNOWLEDGE,
                         reasoner_delay_s=10, silence_s=0.2, max_fillers=20, max_phrase_tokens=16,
                         turn_timeout_s=600, api_name="/chat")
    deadline = time.monotonic() + 60
    while not any(_talker_text(u[0]) not in ("…", "") for u in long_turn.outputs() if len(u[0]) == 6):
        assert time.monotonic() < deadline and not long_turn.done(), long_turn.done() and long_turn.result()
        time.sleep(0.05)
    t0 = time.monotonic()
    stopped = a.predict(api_name="/stop")
    final = long_turn.result(timeout=10)
    assert time.monotonic() - t0 < 2.0
    assert len(stopped[0]) == 6 and "[cancelled]" in _talker_text(stopped[0])
    assert 'data-reason="cancelled"' in final[1]
    n = len(long_turn.outputs())
    time.sleep(0.5)
    assert len(long_turn.outputs()) == n  # no update after Stop
    store = demo.convfill_store
    rows = store.db.execute("select c.id, t.user, t.end_reason from turns t join conversations c "
                            "on t.conversation_id = c.id order by t.started_at").fetchall()
    by_conv: dict = {}
    for cid, user, reason in rows:
        by_conv.setdefault(cid, []).append((user, reason))
    assert sorted(len(v) for v in by_conv.values()) == [1, 2]  # one conversation per client
    assert ("And when was it published?", "cancelled") in max(by_conv.values(), key=len)
    # B still sees only its own conversation after A's second turn
    b_chat = str(b.predict(api_name="/stop")[0])
    assert "Tell me about Paris." in b_chat and "Austen" not in b_chat and "published" not in b_chat


@pytest.mark.model
def test_bad_input_is_a_clean_error(app):
    from gradio_client.exceptions import AppError

    _, url = app
    c = _client(url)
    with pytest.raises(AppError, match="Message is empty"):
        c.predict(message="<|im_end|>", **TURN)
    with pytest.raises(AppError, match="GGUF file not found"):
        c.predict(message="hello", talker="/nowhere/x.gguf", **TURN)
    with pytest.raises(AppError, match="Oracle knowledge"):
        c.predict(message="hello", **{**TURN, "knowledge": ""})


@pytest.mark.model
def test_app_py_assembles_demo_on_access_and_does_not_launch(monkeypatch):
    """`app.py` is the assembler: `demo` is built on first access (Spaces look it up), importing the module
    builds nothing, and it launches only under __main__."""
    import importlib.util
    from pathlib import Path

    import gradio as gr

    spec = importlib.util.spec_from_file_location("convfill_app", Path(__file__).parents[1] / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module._demo is None  # `from app import build_app` (tests, convfill.eval) builds no app
    assert isinstance(module.demo, gr.Blocks) and module.demo is module.demo and not module.demo.is_running
    names = {fn.api_name for fn in module.demo.fns.values()}
    assert {"chat", "stop", "new_conversation"} <= names
    src = (Path(__file__).parents[1] / "app.py").read_text()
    assert src.count("launch(") == 1 and 'if __name__ == "__main__":' in src
    labeling = next(t for t in module.demo.blocks.values() if isinstance(t, gr.Tab) and t.label == "Labeling")
    assert labeling is not None  # the workbench tab is added here, by the assembler


@pytest.mark.model
def test_local_reasoner_is_loaded_once_and_copied_per_session():
    from convfill.reasoners import ReasonerSpec

    pool = ModelPool()
    a = pool.local_reasoner(ReasonerSpec("local", delay_s=0.5))
    b = pool.local_reasoner(ReasonerSpec("local", delay_s=2.0))
    assert a is not b and a.llm is b.llm and a._lock is b._lock  # one model, one generation at a time
    assert (a.delay_s, b.delay_s) == (0.5, 2.0) and a.describe()["delay_s"] == 0.5
