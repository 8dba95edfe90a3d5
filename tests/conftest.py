"""Test isolation: every test gets its own data dir and database; no .env, no keys from the developer."""

import os

import pytest

_KEY_VARS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY")


@pytest.fixture(scope="session")
def model_home(tmp_path_factory):
    """One data dir per test session for converted models (the Q8_0 copy is made once)."""
    return tmp_path_factory.mktemp("convfill_home")


@pytest.fixture(autouse=True)
def _isolate(monkeypatch, tmp_path, model_home):
    monkeypatch.setenv("CONVFILL_HOME", str(model_home))
    monkeypatch.setenv("CONVFILL_DB", str(tmp_path / "convfill.db"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    for k in _KEY_VARS:
        monkeypatch.delenv(k, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env or relative paths from the repo


@pytest.fixture(scope="session")
def real_talker(model_home):
    """The shipped GGUF Talker, loaded once per session (greedy, deterministic)."""
    os.environ["CONVFILL_HOME"] = str(model_home)
    from convfill.talkers.llamacpp import LlamaCppTalker

    t = LlamaCppTalker(temperature=0.0)
    yield t
    t.close()
