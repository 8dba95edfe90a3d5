"""The OpenAI Reasoner: chat-completions streaming through the official `openai` SDK.

The same code serves OpenAI itself and any OpenAI-compatible server (Ollama, vLLM, LM Studio,
`python -m llama_cpp.server`): only `base_url` differs. Key rules, chosen so a real OpenAI key is never sent
to a server the user did not mean it for:

* no `base_url`: the key comes from `api_key`, else `OPENAI_API_KEY` (missing -> `MissingKeyError`);
* explicit `base_url`: the key comes from `api_key`, else from the variable named by `api_key_env`, else a
  placeholder (local servers need none) - `OPENAI_API_KEY` is not read;
* `OPENAI_BASE_URL` in the environment (the SDK's own convention) pairs with `OPENAI_API_KEY`.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

try:
    import openai
except ImportError as e:  # pragma: no cover - openai is in requirements.txt
    raise ImportError("The openai Reasoner needs the SDK: pip install openai", name="openai") from e

from ..errors import MissingKeyError
from .base import ReasonerRequest
from .sdk import SDKReasoner, Secret, probe, resolve_key

DEFAULT_MODEL = "gpt-4o-mini"  # fast first token, no hidden reasoning tokens, takes temperature/max_tokens
_NO_KEY = "no-key-required"  # placeholder for servers without auth (the SDK insists on some key)


class OpenAIReasoner(SDKReasoner):
    """Knowledge from OpenAI or an OpenAI-compatible server.

    Args:
        model: model name (default gpt-4o-mini; for a local server, whatever it serves).
        api_key_env: environment variable holding the key for `base_url` (e.g. a vLLM `--api-key`).
        **options: see `SDKReasoner` (api_key, base_url, system, direct, max_tokens, temperature,
            timeout_s, max_retries).
    """

    name = "openai"
    provider = "OpenAI"
    default_model = DEFAULT_MODEL
    key_env = ("OPENAI_API_KEY",)

    def __init__(self, model: str | None = None, *, base_url: str | None = None, api_key_env: str | None = None,
                 **options: Any):
        self._explicit_base = bool(base_url)
        self.api_key_env = api_key_env
        if base_url:
            self.provider = "The OpenAI-compatible server"
        super().__init__(model, base_url=base_url or os.environ.get("OPENAI_BASE_URL") or None, **options)

    def _resolve_key(self, api_key: str | None) -> tuple[Secret, str]:
        if api_key:
            return Secret(api_key), "argument"
        env = (self.api_key_env,) if self.api_key_env else () if self._explicit_base else self.key_env
        key, source = resolve_key(None, env)
        if key is not None:
            return key, source
        if self.api_key_env:
            raise MissingKeyError(self.provider, (self.api_key_env,))
        if self.base_url:
            return Secret(_NO_KEY), "none"
        raise MissingKeyError(self.provider, self.key_env)

    @property
    def key_hint(self) -> str | None:
        if self.key_source == "none":
            return "The server wants a key: pass api_key, or name its variable with --api-key-env."
        return super().key_hint

    def _make_client(self) -> Any:
        return openai.AsyncOpenAI(api_key=self._key.reveal(), base_url=self.base_url, timeout=self.timeout_s,
                                  max_retries=self.max_retries)

    async def _deltas(self, client: Any, request: ReasonerRequest) -> AsyncIterator[str]:
        kwargs: dict[str, Any] = {"model": self.model, "messages": request.chat_messages(self.system),
                                  "stream": True}
        # OpenAI's newer models only take max_completion_tokens; compatible servers (llama.cpp, older
        # vLLM/Ollama) only know max_tokens.
        kwargs["max_tokens" if self.base_url else "max_completion_tokens"] = self.max_tokens
        if self.temperature is not None:
            kwargs["temperature"] = self.temperature
        finished = False
        stream = await client.chat.completions.create(**kwargs)
        async with stream:  # closes the HTTP response on exit, cancellation included
            async for chunk in stream:
                for choice in chunk.choices or ():  # usage/keep-alive chunks carry no choices
                    if choice.delta is not None and choice.delta.content:
                        yield choice.delta.content
                    finished = finished or bool(choice.finish_reason)
        if not finished:
            raise self.incomplete()

    @classmethod
    def available(cls, base_url: str | None = None) -> tuple[bool, str]:
        """Usable when a compatible server answers at `base_url`/`OPENAI_BASE_URL`, or the key is set."""
        url = base_url or os.environ.get("OPENAI_BASE_URL")
        if url:
            return probe(url.rstrip("/") + "/models")
        ok, detail = cls.key_status()
        return ok, detail if ok else detail + " (or use --base-url for an OpenAI-compatible server)"
