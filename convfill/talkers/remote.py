"""A Talker on an OpenAI-compatible *completions* server: raw ConvFill prompts in, streamed text out.

This is how a deployment grows past one machine: several app replicas share one Talker server (llama.cpp's
server, `python -m llama_cpp.server --interrupt_requests False` (by default it cuts a running phrase off
when another request arrives), or vLLM on a GPU, which batches the requests it gets), and the apps keep
only the engine. Each replica keeps up to `concurrency` phrases in flight (its visitors' phrases at once, the
first words of a turn first when more wait), each read on a thread of its own: the server does the
batching, and nothing here waits on the network while holding a model. The prompt is built here, byte-exact
as for the local runtimes (`convfill.prompt`), and sent as is to `/v1/completions` (not chat: the server must not apply a
chat template of its own); a phrase ends at the template's end marker or a newline, as locally. Stopping
a phrase (barge-in) closes the HTTP stream.

In the app a remote Talker is an operator's choice (`CONVFILL_TALKERS=remote:http://host:8080/v1`); public
mode lets visitors pick only the offered Talkers. `api_key_env` names the variable holding the server's key.
"""

from __future__ import annotations

import os
import threading
from collections.abc import AsyncIterator, Iterator

from ..aio import ModelThread, iterate_in_thread
from ..errors import ConfigError, TalkerLoadError
from ..policy import parse_base_url
from ..prompt import PhraseContext
from .base import Talker, phrase_priority
from .slots import Slots

CONCURRENCY_ENV = "CONVFILL_REMOTE_CONCURRENCY"


def default_concurrency() -> int:
    """Phrases one replica keeps in flight: CONVFILL_REMOTE_CONCURRENCY (a positive integer), else 8."""
    env = os.environ.get(CONCURRENCY_ENV, "").strip()
    if not env:
        return 8
    if not env.isdigit() or not 0 < int(env) <= 1024:
        raise ConfigError(f"{CONCURRENCY_ENV}={env!r}: use a whole number from 1 to 1024")
    return int(env)


class RemoteTalker(Talker):
    """Args:
        base_url: the server's OpenAI-compatible API root, e.g. `http://127.0.0.1:8080/v1`.
        server_model: the model name the server serves (its alias); default: the first one it lists.
        style: "convfill" (default: a trained Talker) or "prompted".
        temperature: 0 = greedy (the server's own sampler; llama.cpp applies the same top-k 40 and repeat
            penalty 1.1 as the local runtime).
        api_key_env: variable holding the server's key (default: none needed).
        timeout_s: connect / read timeout.
        concurrency: phrases this replica sends at once (default: CONVFILL_REMOTE_CONCURRENCY, else 8; match
            the server's parallel slots); more wait, first words first.
    """

    runtime = "remote"

    def __init__(self, base_url: str | None = None, *, server_model: str | None = None, style: str | None = None,
                 template: str = "chatml", temperature: float = 0.0, top_p: float = 0.9,
                 api_key_env: str | None = None, timeout_s: float = 30.0, system: str | None = None,
                 concurrency: int | None = None, **_ignored):
        if not base_url:
            raise ConfigError("The remote Talker needs the server's URL, e.g. remote:http://127.0.0.1:8080/v1")
        parse_base_url(base_url)
        import openai

        key = os.environ.get(api_key_env, "") if api_key_env else "no-key-required"
        if api_key_env and not key:
            raise ConfigError(f"{api_key_env} is not set (the remote Talker's key)")
        self.base_url = base_url.rstrip("/")
        self.client = openai.OpenAI(base_url=self.base_url, api_key=key, timeout=timeout_s, max_retries=1)
        try:
            served = [m.id for m in self.client.models.list().data]
        except Exception as e:  # noqa: BLE001 - any transport or server error is a load error here
            raise TalkerLoadError(f"no Talker server answers at {self.base_url}: {type(e).__name__}") from None
        self.server_model = server_model or (served[0] if served else "")
        if not self.server_model:
            raise TalkerLoadError(f"the Talker server at {self.base_url} serves no model")
        super().__init__(f"{self.server_model}@{self.base_url}", template, system, style or "convfill")
        self.temperature, self.top_p = temperature, top_p
        concurrency = concurrency or default_concurrency()
        self._slots = Slots(concurrency)  # requests in flight (a worker each, so taking one never fails)
        self._requests = ModelThread("convfill-remote", workers=concurrency)

    async def stream(self, ctx: PhraseContext, max_tokens: int = 48) -> AsyncIterator[str]:
        """One phrase, read on a request thread of its own (not the model thread: the server computes)."""
        prompt = self.prompt(ctx)

        def request(stop: threading.Event) -> Iterator[str]:
            slot = self._slots.take()
            if slot is None:  # more requests than workers cannot happen; refuse rather than overrun
                raise TalkerLoadError("the remote Talker has no request slot free")
            with self._slots.holding(slot, self.generate(prompt, max_tokens, stop)) as pieces:
                yield from pieces

        async for piece in iterate_in_thread(request, self._requests.at(phrase_priority(ctx))):
            yield piece

    def generate(self, prompt: str, max_tokens: int, stop: threading.Event) -> Iterator[str]:
        stream = self.client.completions.create(model=self.server_model, prompt=prompt, max_tokens=max_tokens,
                                                temperature=self.temperature, top_p=self.top_p, stream=True,
                                                stop=[*self.template.stops, "\n"])
        emitted = False
        try:
            for chunk in stream:
                if stop.is_set():
                    return
                text = chunk.choices[0].text if chunk.choices else ""
                if not emitted:
                    text = text.lstrip()  # as locally: a phrase starts at its first word
                if text:
                    emitted = True
                    yield text
        finally:
            stream.close()  # barge-in: the server stops generating for us

    def describe(self) -> dict:
        return {**super().describe(), "base_url": self.base_url, "temperature": self.temperature}
