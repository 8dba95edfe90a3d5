"""Every Reasoner the app offers runs a whole turn through the app's own API (`gradio_client` -> `/chat`),
each against a loopback server that speaks its provider's wire format, and the key rule holds there:
an environment key only ever reaches its own provider's endpoint, never a Base URL a visitor typed.

The "provider's own endpoint" is moved to loopback the way an operator would point the app at a gateway:
with the SDKs' own variables (`OPENAI_BASE_URL`, `ANTHROPIC_BASE_URL`, `GOOGLE_GEMINI_BASE_URL`).
"""

from __future__ import annotations

import pytest
from provider_wire import DEFAULT_TEXTS, ProviderServer
from test_app import _client, _free_port, _talker_text, app, launched  # noqa: F401 - `app` is a fixture
from test_reasoners_sdk import KEYS, key_sent

from convfill.policy import Policy
from convfill.reasoners import REASONERS

pytestmark = pytest.mark.model
BASE_ENV = {"openai": "OPENAI_BASE_URL", "anthropic": "ANTHROPIC_BASE_URL", "gemini": "GOOGLE_GEMINI_BASE_URL"}
KEY_ENV = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY", "gemini": "GEMINI_API_KEY"}
FAST = dict(max_phrase_tokens=12, turn_timeout_s=600, reasoner_delay_s=0.0, api_name="/chat")
ANSWER = "".join(DEFAULT_TEXTS).strip()


def _turn(client, **kw):
    return client.predict(message="Who wrote Pride and Prejudice?", **{**FAST, **kw})


def _stored_turn(demo):
    store = demo.convfill_store
    (turn,) = store.db.execute("select id, reasoner, end_reason from turns").fetchall()
    return turn, [c["text"] for c in store.chunks(turn[0])]


def test_every_registered_reasoner_is_covered_here():
    assert set(REASONERS) == {"local", "oracle", "openai", "anthropic", "gemini", "replay"}, \
        "a new Reasoner needs its app-level test in this file"


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini"])
def test_cloud_reasoner_full_turn_through_the_app(app, provider, monkeypatch):
    demo, url = app
    with ProviderServer(provider) as srv:
        monkeypatch.setenv(KEY_ENV[provider], KEYS[provider])
        monkeypatch.setenv(BASE_ENV[provider], srv.url)
        chat, timeline, metrics, _ = _turn(_client(url), reasoner=provider)
    assert len(srv.requests) == 1 and key_sent(srv.requests[0]) == KEYS[provider]
    user, reasoner, talker = chat
    assert ANSWER.split(". ")[0] in reasoner["content"][0]["text"]  # the knowledge arrived as chunks
    assert 'data-source="chunk"' in timeline and 'data-reason="done"' in timeline
    (tid, described, reason), chunks = _stored_turn(demo)
    assert reason == "done" and f'"reasoner": "{provider}"' in described and chunks
    assert KEYS[provider] not in described and KEYS[provider] not in str(chat)


def test_openai_compatible_server_at_a_typed_base_url_never_gets_the_env_key(app, monkeypatch):
    demo, url = app
    monkeypatch.setenv("OPENAI_API_KEY", KEYS["openai"])
    c = _client(url)
    with ProviderServer("openai") as srv:
        chat, timeline, _, _ = _turn(c, reasoner="openai", base_url=srv.url, reasoner_model="served-name")
        assert key_sent(srv.requests[0]) not in (None, "", KEYS["openai"])  # a placeholder, never the env key
        assert srv.requests[0].body["model"] == "served-name"
        assert 'data-reason="done"' in timeline and "Pride and Prejudice" in str(chat[1])
        _turn(c, reasoner="openai", base_url=srv.url, api_key="sk-typed-for-this-server-0042")
        assert key_sent(srv.requests[1]) == "sk-typed-for-this-server-0042"
    db = b"".join(p.read_bytes() for p in demo.convfill_store.path.parent.glob("*.db*"))
    assert b"sk-typed-for-this-server" not in db and KEYS["openai"].encode() not in db


@pytest.mark.parametrize("provider", ["anthropic", "gemini"])
def test_a_visitor_base_url_never_receives_the_servers_key(app, provider, monkeypatch):
    """The issue's attack: Reasoner + a Base URL of the visitor's choosing + an empty key box."""
    from gradio_client.exceptions import AppError

    _, url = app
    monkeypatch.setenv(KEY_ENV[provider], KEYS[provider])
    with ProviderServer(provider) as attacker:
        with pytest.raises(AppError, match="custom Base URL: enter a key"):
            _turn(_client(url), reasoner=provider, base_url=attacker.url)
        assert attacker.requests == []  # nothing was sent at all
        _turn(_client(url), reasoner=provider, base_url=attacker.url, api_key=KEYS[provider] + "-typed")
        assert [key_sent(r) for r in attacker.requests] == [KEYS[provider] + "-typed"]


def test_local_reasoner_full_turn_through_the_app(app):
    demo, url = app
    chat, timeline, metrics, _ = _turn(_client(url), reasoner="local")
    assert 'data-reason="done"' in timeline and "Talker TTFT" in metrics
    (_, described, reason), chunks = _stored_turn(demo)
    assert reason == "done" and '"reasoner": "local"' in described and chunks


def test_replay_reasoner_full_turn_through_the_app(app, tmp_path):
    import json

    demo, url = app
    rec = tmp_path / "rec.jsonl"
    rec.write_text(json.dumps({"user": "Who wrote Pride and Prejudice?", "chunks": [
        {"t_ms": 300.0, "text": "Jane Austen wrote Pride and Prejudice."}]}) + "\n")
    chat, timeline, _, _ = _turn(_client(url), reasoner="replay", reasoner_model=str(rec))
    assert "Jane Austen wrote Pride and Prejudice." in chat[1]["content"][0]["text"]
    assert 'data-reason="done"' in timeline
    (_, described, reason), chunks = _stored_turn(demo)
    assert reason == "done" and '"reasoner": "replay"' in described and chunks == [
        "Jane Austen wrote Pride and Prejudice."]


def test_errors_a_user_can_act_on_show_their_message(app):
    from gradio_client.exceptions import AppError

    _, url = app
    c = _client(url)
    with pytest.raises(AppError, match="No API key for Anthropic. Set ANTHROPIC_API_KEY"):
        _turn(c, reasoner="anthropic")
    with pytest.raises(AppError, match="http:// or https://"):
        _turn(c, reasoner="openai", base_url="file:///etc/passwd")
    # an unreachable server: the turn still runs, the Talker says so honestly, the Reasoner message says why
    chat, timeline, _, _ = _turn(c, reasoner="openai", base_url=f"http://127.0.0.1:{_free_port()}/v1")
    assert "reasoner error (network)" in chat[1]["content"][0]["text"]
    assert "can't reach my knowledge source" in _talker_text(chat) and 'data-source="error"' in timeline


# ---------------------------------------------------------------------------------------- public mode
@pytest.fixture
def public_app(real_talker, monkeypatch):
    from convfill.ui import AppConfig
    from convfill.ui.session import DEFAULT_TALKER, ModelPool

    monkeypatch.setenv("ANTHROPIC_API_KEY", KEYS["anthropic"])
    pool = ModelPool()
    pool.add_talker(DEFAULT_TALKER, real_talker)
    with ProviderServer("openai") as allowed:
        policy = Policy(public=True, allowed_hosts=(f"127.0.0.1:{allowed.url.split(':')[2].split('/')[0]}",))
        with launched(AppConfig(policy=policy), pool) as (demo, url):
            yield demo, url, allowed


def test_public_mode_allows_only_the_operators_hosts_and_models(public_app, tmp_path):
    from gradio_client.exceptions import AppError

    demo, url, allowed = public_app
    c = _client(url)
    with ProviderServer("openai") as internal:
        with pytest.raises(AppError, match="Custom Base URLs are disabled"):
            _turn(c, reasoner="openai", base_url=internal.url)
        assert internal.requests == []
    chat, timeline, _, _ = _turn(c, reasoner="openai", base_url=allowed.url)
    assert 'data-reason="done"' in timeline and len(allowed.requests) == 1
    model = tmp_path / "elsewhere.gguf"
    model.write_bytes(b"GGUF")
    for field in ("talker", "reasoner_model"):
        with pytest.raises(AppError, match="only loads the"):
            _turn(c, reasoner="local", **{field: str(model)})
    with pytest.raises(AppError, match="only loads the"):
        _turn(c, reasoner="local", talker="/nowhere/secret.gguf")  # no hint whether the path exists


def test_public_mode_does_not_reveal_which_keys_exist(public_app):
    demo, _, _ = public_app
    dropdown = next(comp for comp in demo.config["components"]
                    if comp.get("props", {}).get("elem_id") == "cf-reasoner")
    labels = [choice[0] for choice in dropdown["props"]["choices"]]
    assert "anthropic (available)" in labels and "gemini (unavailable)" in labels
    assert not any("API_KEY" in label or "set " in label for label in labels)


def test_public_mode_defaults(monkeypatch):
    monkeypatch.delenv("CONVFILL_PUBLIC", raising=False)
    monkeypatch.delenv("SPACE_ID", raising=False)
    assert not Policy.from_env().public
    monkeypatch.setenv("SPACE_ID", "someone/convfill")
    assert Policy.from_env().public  # on a Space by default
    monkeypatch.setenv("CONVFILL_PUBLIC", "0")
    assert not Policy.from_env().public  # unless the operator says otherwise
    monkeypatch.setenv("CONVFILL_PUBLIC", "1")
    monkeypatch.setenv("CONVFILL_ALLOWED_HOSTS", "Gateway.example:8443, proxy.internal")
    p = Policy.from_env()
    assert p.allowed_hosts == ("gateway.example:8443", "proxy.internal")
    assert p.check_base_url("https://proxy.internal/v1") == "https://proxy.internal/v1"
    assert p.check_base_url("https://GATEWAY.example:8443/v1")
    for bad in ("https://gateway.example/v1", "http://169.254.169.254/latest", "https://proxy.internal.evil.com/"):
        with pytest.raises(Exception, match="disabled"):
            p.check_base_url(bad)
    with pytest.raises(Exception, match="user name or password"):
        Policy().check_base_url("https://user:pw@proxy.internal/v1")
