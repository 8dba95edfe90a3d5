"""The OpenAI, Anthropic and Gemini Reasoners, run through their official SDKs against loopback servers
that speak each provider's streaming wire format (tests/provider_wire.py), and through the real Engine.

Nothing is patched: the SDKs build real HTTP requests, parse real SSE, and fail on real status codes,
truncated bodies and timeouts. Only the base URL differs from production.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from provider_wire import DEFAULT_TEXTS, ProviderServer, Reply

from convfill.config import EngineConfig
from convfill.engine import Engine
from convfill.errors import ConfigError, MissingKeyError, ReasonerError
from convfill.events import ChunkArrived, ErrorEvent, PhraseEnded, ReasonerEnded, TurnEnded
from convfill.reasoners import (DIRECT_SYSTEM_PROMPT, KNOWLEDGE_SYSTEM_PROMPT, REASONERS, get_reasoner,
                                reasoner_status)
from convfill.reasoners.base import Message, ReasonerRequest
from convfill.testing import ScriptedTalker, of_type, run_turn

PROVIDERS = ("openai", "anthropic", "gemini")
KEYS = {"openai": "sk-test-Sup3rSecretKeyValue0042", "anthropic": "sk-ant-test-Sup3rSecretKeyValue0042",
        "gemini": "AIzaTestSup3rSecretKeyValue0042"}
QUESTION = "Who wrote Pride and Prejudice?"
BASE_ENV = {"openai": "OPENAI_BASE_URL", "anthropic": "ANTHROPIC_BASE_URL", "gemini": "GOOGLE_GEMINI_BASE_URL"}
KEY_ENV = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY", "gemini": "GEMINI_API_KEY"}
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(params=PROVIDERS)
def server(request):
    with ProviderServer(request.param) as srv:
        yield srv


@asynccontextmanager
async def reasoner_for(srv: ProviderServer, **options):
    """The provider's Reasoner pointed at `srv` (no SDK retries unless asked), closed afterwards."""
    options.setdefault("max_retries", 0)
    options.setdefault("api_key", KEYS[srv.provider])
    r = get_reasoner(srv.provider, base_url=srv.url, **options)
    try:
        yield r
    finally:
        await r.aclose()


def engine_for(reasoner) -> Engine:
    return Engine(ScriptedTalker(first_token_s=0.001, per_token_s=0.001), reasoner, EngineConfig())


def sent(srv: ProviderServer, i: int = -1) -> tuple[str | None, list[tuple[str, str]]]:
    """(system prompt, [(role, text)...]) of request i, whatever the provider's request layout."""
    body = srv.requests[i].body
    if srv.provider == "openai":
        msgs = [(m["role"], m["content"]) for m in body["messages"]]
        system = msgs.pop(0)[1] if msgs and msgs[0][0] == "system" else None
        return system, msgs
    if srv.provider == "anthropic":
        return body.get("system"), [(m["role"], m["content"]) for m in body["messages"]]
    system = body.get("systemInstruction", {}).get("parts", [{}])[0].get("text")
    return system, [(c["role"], c["parts"][0]["text"]) for c in body["contents"]]


def key_sent(req) -> str | None:
    """The API key a request carried (x-api-key, x-goog-api-key, or Authorization: Bearer, by SDK version)."""
    h = req.headers
    bearer = h.get("authorization", "")
    return h.get("x-api-key") or h.get("x-goog-api-key") or (bearer[7:] if bearer.startswith("Bearer ") else None)


def everything_said(events, reasoner) -> str:
    """All text a user, a log or the database could ever see from this turn and Reasoner."""
    return "\n".join([json.dumps([e.to_dict() for e in events]), repr(reasoner), str(reasoner.describe()),
                      repr(vars(reasoner))])


# ------------------------------------------------------------------------------------------ happy path
async def test_chunks_stream_through_engine(server):
    async with reasoner_for(server) as r:
        events = await run_turn(engine_for(r), QUESTION)
    chunks = [e.text for e in of_type(events, ChunkArrived)]
    assert chunks == ["Jane Austen wrote Pride and Prejudice.", "It was published in eighteen thirteen."]
    knowledge = [e for e in of_type(events, PhraseEnded) if e.source == "chunk"]
    assert [e.chunk_index for e in knowledge] == [0, 1]
    assert not of_type(events, ErrorEvent)
    assert of_type(events, ReasonerEnded)[0].status == "done"
    assert events[-1].reason == "done"
    # The request the provider received: model, streaming, the knowledge prompt, the user's words, the key.
    req = server.requests[0]
    system, msgs = sent(server)
    assert system == KNOWLEDGE_SYSTEM_PROMPT
    assert msgs == [("user", QUESTION)]
    assert key_sent(req) == KEYS[server.provider]
    if server.provider == "gemini":
        assert req.path.split("?")[0].endswith("/models/gemini-2.5-flash:streamGenerateContent")
        assert "alt=sse" in req.path
        thinking = req.body["generationConfig"]["thinkingConfig"]  # the SDK's casing varies by version
        assert thinking.get("thinkingBudget", thinking.get("thinking_budget")) == 0
    else:
        assert req.body["stream"] is True
        assert req.body["model"] == r.model


async def test_second_turn_sends_history_in_provider_roles(server):
    async with reasoner_for(server, model="m-test") as r:
        engine = engine_for(r)
        first = await run_turn(engine, QUESTION)
        await run_turn(engine, "When was that?")
    reply = first[-1].reply
    assert reply
    _, msgs = sent(server, 1)
    assistant = "model" if server.provider == "gemini" else "assistant"
    assert msgs == [("user", QUESTION), (assistant, reply), ("user", "When was that?")]


async def test_history_is_made_alternating_for_strict_providers():
    """An empty Talker reply or two user messages in a row would be a 400 at Anthropic and Gemini."""
    history = (Message("user", "a"), Message("assistant", ""), Message("user", "b"), Message("assistant", "c"))
    req = ReasonerRequest("d", history)
    for provider in ("anthropic", "gemini"):
        with ProviderServer(provider) as srv:
            async with reasoner_for(srv) as r:
                assert "".join([d async for d in r.stream(req)]).startswith("Jane Austen")
            _, msgs = sent(srv)
            roles = [role for role, _ in msgs]
            assert roles[0] == "user" and all(a != b for a, b in zip(roles, roles[1:]))
            assert msgs[0] == ("user", "a\nb") and msgs[-1] == ("user", "d")


async def test_direct_mode_and_custom_system_prompt(server):
    async with reasoner_for(server, direct=True) as r:
        text = "".join([d async for d in r.stream(ReasonerRequest(QUESTION))])
        assert r.describe()["direct"] is True
    assert text.startswith("Jane Austen wrote")
    assert sent(server)[0] == DIRECT_SYSTEM_PROMPT
    async with reasoner_for(server, system="Answer in one sentence.") as r:
        _ = [d async for d in r.stream(ReasonerRequest(QUESTION))]
    assert sent(server)[0] == "Answer in one sentence."


async def test_openai_sends_max_tokens_param_the_server_understands():
    with ProviderServer("openai") as srv:
        async with reasoner_for(srv, max_tokens=77, temperature=0.2) as r:
            _ = [d async for d in r.stream(ReasonerRequest(QUESTION))]
    body = srv.requests[0].body
    assert body["max_tokens"] == 77 and "max_completion_tokens" not in body  # compatible servers
    assert body["temperature"] == 0.2


# -------------------------------------------------------------------------------------------- failures
@pytest.mark.parametrize("status,category", [(401, "auth"), (403, "auth"), (429, "rate_limit"), (500, "server"),
                                             (503, "server")])
async def test_http_errors_become_error_event_and_honest_phrase(server, status, category):
    server.script(Reply(status=status))
    async with reasoner_for(server) as r:
        events = await run_turn(engine_for(r), QUESTION)
    (err,) = of_type(events, ErrorEvent)
    assert (err.where, err.category) == ("reasoner", category)
    assert f"HTTP {status}" in err.message
    honest = [e for e in of_type(events, PhraseEnded) if e.source == "error"]
    assert [e.text for e in honest] == [EngineConfig().error_phrase]
    assert of_type(events, ReasonerEnded)[0].status == "error"
    assert isinstance(events[-1], TurnEnded) and events[-1].reason == "done"
    if category == "auth":
        assert "Check the API key you entered" in err.message


@pytest.mark.parametrize("provider,reply,category", [
    ("gemini", Reply(status=400, error_type="API_KEY_INVALID"), "auth"),  # Gemini's real bad-key answer
    ("anthropic", Reply(status=529), "server"),  # overloaded
    ("openai", Reply(stream_error="server_error"), "server"),  # error event inside a 200 stream
    ("anthropic", Reply(stream_error="overloaded_error"), "server"),
    ("anthropic", Reply(stream_error="rate_limit_error"), "rate_limit"),
    ("gemini", Reply(stream_error="UNAVAILABLE"), "server"),
    ("openai", Reply(status=404, error_message="The model `nope` does not exist"), "unknown"),
])
async def test_provider_specific_errors(provider, reply, category):
    with ProviderServer(provider) as srv:
        srv.script(reply)
        async with reasoner_for(srv) as r:
            events = await run_turn(engine_for(r), QUESTION)
    (err,) = of_type(events, ErrorEvent)
    assert err.category == category, err.message
    if reply.status == 404:
        assert "does not exist" in err.message  # the provider's own words help fix a bad model name
    said = [e.text for e in of_type(events, PhraseEnded) if e.source == "error"]
    assert said == [EngineConfig().partial_error_phrase if of_type(events, ChunkArrived)
                    else EngineConfig().error_phrase]


async def test_mid_stream_disconnect_keeps_what_arrived(server):
    server.script(Reply(cut_after=2))  # "Jane Austen wrote ", "Pride and Prejudice. ", then the socket dies
    async with reasoner_for(server) as r:
        events = await run_turn(engine_for(r), QUESTION)
    assert [e.text for e in of_type(events, ChunkArrived)] == ["Jane Austen wrote Pride and Prejudice."]
    (err,) = of_type(events, ErrorEvent)
    assert err.category == "network"
    said = [e for e in of_type(events, PhraseEnded) if e.source in ("chunk", "error")]
    assert [e.source for e in said] == ["chunk", "error"]
    assert said[-1].text == EngineConfig().partial_error_phrase


async def test_stream_that_ends_without_end_marker_is_not_taken_as_complete(server):
    server.script(Reply(complete=False))
    async with reasoner_for(server) as r:
        events = await run_turn(engine_for(r), QUESTION)
    (err,) = of_type(events, ErrorEvent)
    assert err.category == "network" and "before the answer was complete" in err.message
    # The last sentence is held back: without the end marker nobody knows it was complete.
    assert [e.text for e in of_type(events, ChunkArrived)] == ["Jane Austen wrote Pride and Prejudice."]


async def test_slow_first_byte_is_a_timeout(server):
    server.script(Reply(first_byte_s=5.0))
    async with reasoner_for(server, timeout_s=0.3) as r:
        t0 = time.monotonic()
        events = await run_turn(engine_for(r), QUESTION)
        elapsed = time.monotonic() - t0
    (err,) = of_type(events, ErrorEvent)
    assert err.category == "timeout", err.message
    assert elapsed < 2.5  # the client timeout fired, not the server finishing its 5 s wait
    assert [e.text for e in of_type(events, PhraseEnded) if e.source == "error"] == [EngineConfig().error_phrase]


async def test_malformed_stream(server):
    server.script(Reply(raw=b"{not json"))
    async with reasoner_for(server) as r:
        events = await run_turn(engine_for(r), QUESTION)
    (err,) = of_type(events, ErrorEvent)
    assert err.category == "malformed", err.message


async def test_unreachable_server_is_a_network_error(server):
    url = server.url
    server.__exit__(None, None, None)  # nothing listens there any more
    r = get_reasoner(server.provider, base_url=url, api_key="k", max_retries=0, timeout_s=2.0)
    events = await run_turn(engine_for(r), QUESTION)
    (err,) = of_type(events, ErrorEvent)
    assert err.category == "network", err.message
    await r.aclose()


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_sdk_retry_recovers_from_one_429(provider):
    with ProviderServer(provider) as srv:
        srv.script(Reply(status=429, headers={"retry-after-ms": "10", "retry-after": "0"}), Reply())
        async with reasoner_for(srv, max_retries=1) as r:
            events = await run_turn(engine_for(r), QUESTION)
    assert len(srv.requests) == 2
    assert not of_type(events, ErrorEvent)
    assert len(of_type(events, ChunkArrived)) == 2


async def test_cancelling_the_turn_closes_the_http_stream(server):
    server.script(Reply(texts=[f"Fact number {i}. " for i in range(400)], gap_s=0.02))
    seen = []
    async with reasoner_for(server) as r:
        engine = Engine(ScriptedTalker(first_token_s=0.001, per_token_s=0.001), r, EngineConfig(),
                        observers=[seen.append])
        turn = engine.turn(QUESTION)
        async for ev in turn:
            if isinstance(ev, ChunkArrived):
                break
        await turn.aclose()  # the user barged in
        # The server notices the closed socket on its next writes (a 400-event stream takes 8 s otherwise).
        assert server.client_gone.wait(3.0)
    assert seen[-1].reason == "cancelled"
    assert of_type(seen, ReasonerEnded)[0].status == "cancelled"
    assert len(of_type(seen, ChunkArrived)) < 50


# --------------------------------------------------------------------------------------- keys & secrets
async def test_api_key_never_leaks(server, caplog):
    key = KEYS[server.provider]
    caplog.set_level(logging.DEBUG)
    # Providers echo (parts of) a rejected key; make the scripted ones echo all of it, everywhere.
    server.script(Reply(), Reply(status=401, error_message=f"Incorrect API key provided: {key}"),
                  Reply(status=500, error_message=f"internal error for key {key}"),
                  Reply(status=429, error_message=f"quota for {key} exceeded"))
    async with reasoner_for(server) as r:
        engine = engine_for(r)
        events = [ev for text in ("one", "two", "three", "four") for ev in await run_turn(engine, text)]
        assert [e.category for e in of_type(events, ErrorEvent)] == ["auth", "server", "rate_limit"]
        assert key not in everything_said(events, r)
        messages = [e.message for e in of_type(events, ErrorEvent)]
        assert any("[redacted]" in m for m in messages)  # the server text is kept, the key is not
        server.script(Reply(status=401, error_message=key))
        with pytest.raises(ReasonerError) as exc:
            _ = [d async for d in r.stream(ReasonerRequest("x"))]
    assert key not in str(exc.value) and key not in repr(exc.value)
    assert exc.value.__cause__ is None and exc.value.__suppress_context__  # no SDK exception holding headers
    assert key not in caplog.text
    assert len(server.requests) == 5


@pytest.mark.parametrize("provider,env", [("openai", "OPENAI_API_KEY"), ("anthropic", "ANTHROPIC_API_KEY"),
                                          ("gemini", "GEMINI_API_KEY or GOOGLE_API_KEY")])
def test_missing_key_names_the_env_var(provider, env):
    with pytest.raises(MissingKeyError) as exc:
        get_reasoner(provider)
    assert env in str(exc.value) and exc.value.category == "missing_key"
    ok, detail = reasoner_status(provider)["usable"], reasoner_status(provider)["detail"]
    assert not ok and env.split(" or ")[0] in detail


@pytest.mark.parametrize("provider,env", [("openai", "OPENAI_API_KEY"), ("anthropic", "ANTHROPIC_API_KEY"),
                                          ("gemini", "GEMINI_API_KEY"), ("gemini", "GOOGLE_API_KEY")])
async def test_key_from_environment(provider, env, monkeypatch):
    key = KEYS[provider]
    monkeypatch.setenv(env, key)
    with ProviderServer(provider) as srv:
        # the operator's endpoint, in the SDK's own variable, pairs with the environment key
        monkeypatch.setenv(BASE_ENV[provider], srv.url)
        r = get_reasoner(provider, max_retries=0)
        _ = [d async for d in r.stream(ReasonerRequest(QUESTION))]
        await r.aclose()
        assert key_sent(srv.requests[0]) == key
        status = reasoner_status(provider)
        assert status["usable"] and key not in status["detail"]
        assert r.describe()["base_url"] == srv.url
        assert r.key_source == env


async def test_gemini_key_precedence(monkeypatch):
    monkeypatch.setenv("GOOGLE_API_KEY", "AIzaGoogleKey000000000")
    monkeypatch.setenv("GEMINI_API_KEY", "AIzaGeminiKey000000000")
    with ProviderServer("gemini") as srv:
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", srv.url)
        r = get_reasoner("gemini", max_retries=0)
        _ = [d async for d in r.stream(ReasonerRequest(QUESTION))]
        await r.aclose()
    assert key_sent(srv.requests[0]) == "AIzaGeminiKey000000000"


async def test_compatible_server_needs_no_key_and_never_gets_the_openai_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEYS["openai"])
    monkeypatch.setenv("LOCAL_SERVER_KEY", "local-secret-123456")
    with ProviderServer("openai") as srv:
        async with reasoner_for(srv, api_key=None) as r:
            events = await run_turn(engine_for(r), QUESTION)
        assert len(of_type(events, ChunkArrived)) == 2
        assert key_sent(srv.requests[0]) not in (None, "", KEYS["openai"])  # a real key stays with OpenAI
        async with reasoner_for(srv, api_key=None, api_key_env="LOCAL_SERVER_KEY") as r:
            _ = [d async for d in r.stream(ReasonerRequest(QUESTION))]
        assert key_sent(srv.requests[1]) == "local-secret-123456"
    with pytest.raises(MissingKeyError, match="NOT_SET_KEY"):
        get_reasoner("openai", base_url=srv.url, api_key_env="NOT_SET_KEY")


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_custom_host_never_sees_the_environment_key(provider, monkeypatch):
    """One rule for every provider: the env key goes only to the provider's own endpoint."""
    monkeypatch.setenv(KEY_ENV[provider], KEYS[provider])
    with ProviderServer(provider) as other:
        if provider == "openai":  # compatible servers often need no key: it gets a placeholder
            async with reasoner_for(other, api_key=None) as r:
                _ = [d async for d in r.stream(ReasonerRequest(QUESTION))]
            assert key_sent(other.requests[0]) not in (None, "", KEYS[provider])
        else:
            with pytest.raises(MissingKeyError, match="custom Base URL") as exc:
                get_reasoner(provider, base_url=other.url)
            assert exc.value.category == "missing_key" and other.requests == []
        # a key named for that host (--api-key-env) is the caller's choice and is sent
        monkeypatch.setenv("THAT_HOST_KEY", "that-host-key-000042")
        async with reasoner_for(other, api_key=None, api_key_env="THAT_HOST_KEY") as r:
            _ = [d async for d in r.stream(ReasonerRequest(QUESTION))]
        assert key_sent(other.requests[-1]) == "that-host-key-000042"
        assert KEYS[provider] not in {key_sent(req) for req in other.requests}


@pytest.mark.parametrize("provider", PROVIDERS)
def test_cli_base_url_never_gets_the_environment_key(provider):
    with ProviderServer(provider) as other:
        env = {**os.environ, KEY_ENV[provider]: KEYS[provider]}
        proc = subprocess.run([sys.executable, "-m", "convfill", "turn", QUESTION, "--reasoner", provider,
                               "--base-url", other.url, "--talker-lora", "none", "--max-phrase-tokens", "4"],
                              capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
        assert KEYS[provider] not in {key_sent(req) for req in other.requests}
        assert KEYS[provider] not in proc.stdout + proc.stderr
        if provider != "openai":
            assert proc.returncode == 1 and "custom Base URL" in proc.stderr and other.requests == []


def test_available_probes_a_compatible_server():
    from convfill.reasoners.openai import OpenAIReasoner

    with ProviderServer("openai") as srv:
        ok, detail = OpenAIReasoner.available(base_url=srv.url)
        url = srv.url
        assert reasoner_status("openai", base_url=url)["usable"]
    assert ok and "reachable" in detail
    t0 = time.monotonic()
    ok, detail = OpenAIReasoner.available(base_url=url)  # the server is gone now
    assert not ok and "no server" in detail and time.monotonic() - t0 < 3


def test_registry_and_cli_listing(capsys, monkeypatch):
    from convfill.cli import main

    assert {"openai", "anthropic", "gemini"} <= set(REASONERS)
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEYS["anthropic"])
    assert main(["reasoners", "--json"]) == 0
    out = capsys.readouterr().out
    rows = {r["name"]: r for r in json.loads(out)}
    assert rows["anthropic"]["usable"] and rows["anthropic"]["detail"] == "ANTHROPIC_API_KEY is set"
    assert not rows["openai"]["usable"] and not rows["gemini"]["usable"]
    assert KEYS["anthropic"] not in out


@pytest.mark.parametrize("bad", [{"max_tokens": 0}, {"timeout_s": 0}, {"max_retries": -1}, {"model": " "}])
def test_bad_options_are_config_errors(bad):
    with pytest.raises(ConfigError):
        get_reasoner("anthropic", api_key="k", **bad)


def test_cli_missing_key_is_one_line_naming_the_variable():
    """Before any model loads, the CLI says which variable to set, in one line."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.update(HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "convfill", "turn", "hi", "--reasoner", "anthropic"],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]  # one line, no traceback
    assert "ANTHROPIC_API_KEY" in proc.stderr


async def test_reasoner_alone_baseline_times_the_first_token(server):
    from convfill.eval.direct import direct_turns
    from convfill.metrics import turn_metrics
    from convfill.reasoners import ReasonerSpec, build_reasoner

    server.script(Reply(first_byte_s=0.25, gap_s=0.05))
    r = build_reasoner(ReasonerSpec(server.provider, base_url=server.url, api_key=KEYS[server.provider],
                                    direct=True))
    (events,) = await direct_turns(r, QUESTION)
    m = turn_metrics(events)
    assert sent(server)[0] == DIRECT_SYSTEM_PROMPT
    assert of_type(events, TurnEnded)[0].reply == "".join(DEFAULT_TEXTS).strip()
    assert 250 <= m.talker_ttft_ms < m.total_ms  # the scripted first-byte delay, then the rest of the stream


def test_reasoner_alone_cli(capsys):
    from convfill.eval.cli import main

    with ProviderServer("openai") as srv:
        assert main(["alone", QUESTION, "--reasoner", "openai", "--base-url", srv.url, "--model", "m",
                     "--rounds", "2", "--json"]) == 0
        assert sent(srv)[0] == DIRECT_SYSTEM_PROMPT
    out = json.loads(capsys.readouterr().out)
    assert out["ttft_ms"]["n"] == 2 and len(out["answers"]) == 2
    assert out["answers"][0]["text"].startswith("Jane Austen")
    assert len(srv.requests) == 2
    with ProviderServer("openai") as srv:
        srv.script(Reply(status=401, error_message="Incorrect API key provided"))  # not retried
        assert main(["alone", QUESTION, "--reasoner", "openai", "--base-url", srv.url, "--model", "m"]) == 1
    err = capsys.readouterr().err
    assert "rejected the API key" in err and len(err.strip().splitlines()) == 1  # a failed answer is no timing


async def test_long_error_text_is_scrubbed_before_it_is_cut():
    """A key straddling the message length limit must not leave a prefix behind."""
    key = KEYS["gemini"]
    with ProviderServer("gemini") as srv:
        srv.script(Reply(status=500, error_message="x" * 234 + key))  # a cut would keep key[:6]
        async with reasoner_for(srv) as r:
            events = await run_turn(engine_for(r), QUESTION)
    (err,) = of_type(events, ErrorEvent)
    assert key[:6] not in err.message and "xxxx" in err.message
