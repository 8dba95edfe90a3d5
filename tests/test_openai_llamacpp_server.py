"""The OpenAI Reasoner against a real OpenAI-compatible server: `python -m llama_cpp.server` on 127.0.0.1
serving the shipped SmolLM2-135M GGUF (the same path as Ollama, vLLM or LM Studio; only the URL differs).

The server runs once per module and is always terminated, also when a test fails.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from convfill.config import EngineConfig
from convfill.engine import Engine
from convfill.events import ChunkArrived, ErrorEvent, ReasonerEnded
from convfill.reasoners import get_reasoner, reasoner_status
from convfill.reasoners.base import ReasonerRequest
from convfill.testing import ScriptedTalker, of_type, run_turn

pytestmark = pytest.mark.model

REPO = Path(__file__).resolve().parents[1]
ALIAS = "smollm2-135m"
READY_TIMEOUT_S = 60  # model load is ~1 s idle, several seconds on a loaded 2-core machine


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve_gguf(model: Path, alias: str, log: Path, n_threads: int = 1, interrupt: bool = True,
               flash_attn: bool = False):
    """`python -m llama_cpp.server` on a free loopback port serving `model` as `alias`; yields its /v1 URL and
    always terminates it. `interrupt=False`: a new request waits for the running one instead of cutting it
    off (the server's default cuts it: a Talker server shared by phrases in flight must not)."""
    port = _free_port()
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--model_alias", alias,
           "--port", str(port), "--host", "127.0.0.1", "--n_ctx", "2048", "--n_threads", str(n_threads),
           "--verbose", "False", "--interrupt_requests", str(interrupt), "--flash_attn", str(flash_attn)]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "HF_HUB_OFFLINE": "1"})
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama_cpp.server exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
            try:
                if httpx.get(url + "/models", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"llama_cpp.server not ready after {READY_TIMEOUT_S} s:\n{log.read_text()[-2000:]}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    from convfill.talkers.llamacpp import default_gguf_path

    with serve_gguf(default_gguf_path(), ALIAS, tmp_path_factory.mktemp("llama_server") / "server.log") as url:
        yield url


async def test_openai_reasoner_streams_from_llama_cpp_server(llama_server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-must-not-be-sent-0000")  # explicit base_url: not sent
    ok = reasoner_status("openai")
    assert ok["usable"]
    r = get_reasoner("openai", base_url=llama_server, model=ALIAS, max_tokens=24, temperature=0.0)
    assert r.available(base_url=llama_server)[0]
    try:
        events = await run_turn(Engine(ScriptedTalker(first_token_s=0.001, per_token_s=0.001), r,
                                       EngineConfig(reasoner_timeout_s=60, turn_timeout_s=120)),
                                "What is the capital of France?")
        assert not of_type(events, ErrorEvent), of_type(events, ErrorEvent)
        chunks = of_type(events, ChunkArrived)
        assert chunks and all(c.text.strip() for c in chunks)
        assert of_type(events, ReasonerEnded)[0].status == "done"
        # Closing a stream early leaves the server healthy: the next request is answered.
        stream = r.stream(ReasonerRequest("Name a planet."))
        first = await anext(stream)
        await stream.aclose()
        assert first
        again = "".join([d async for d in r.stream(ReasonerRequest("Say hello."))])
        assert again.strip()
    finally:
        await r.aclose()


def test_cli_turn_against_llama_cpp_server(llama_server):
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.update(HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "convfill", "turn", "What is the capital of France?", "--reasoner", "openai",
           "--base-url", llama_server, "--model", ALIAS, "--json", "--max-fillers", "0",
           "--max-phrases", "1", "--reasoner-timeout-s", "60"]  # one phrase, spoken from the first chunk
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    types = [e["type"] for e in events]
    assert "chunk_arrived" in types, proc.stdout[-2000:]
    assert "error" not in types, [e for e in events if e["type"] == "error"]
    assert events[-1]["type"] == "turn_ended" and events[-1]["reason"] == "done"
    assert "Traceback" not in proc.stderr and "Event loop is closed" not in proc.stderr

