"""The OpenAI Reasoner: chat-completions streaming through the official `openai` SDK.

The same code serves OpenAI itself and any OpenAI-compatible server (Ollama, vLLM, LM Studio,
`python -m llama_cpp.server`): only `base_url` differs. Keys follow `sdk.route_key`, the rule every provider
shares: `OPENAI_API_KEY` goes only to OpenAI or to the operator's `OPENAI_BASE_URL`; a custom `base_url` gets
the key typed for it, the variable named by `api_key_env`, or a placeholder (local servers need none).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

try:
    import openai
except ImportError as e:  # pragma: no cover - openai is in requirements.txt
    raise ImportError("The openai Reasoner needs the SDK: pip install openai", name="openai") from e

from .base import ReasonerRequest
from .sdk import SDKReasoner, probe

DEFAULT_MODEL = "gpt-4o-mini"  # fast first token, no hidden reasoning tokens, takes temperature/max_tokens


class OpenAIReasoner(SDKReasoner):
    """Knowledge from OpenAI or an OpenAI-compatible server.

    Args:
        model: model name (default gpt-4o-mini; for a local server, whatever it serves).
        **options: see `SDKReasoner` (api_key, api_key_env, base_url, system, direct, max_tokens,
            temperature, timeout_s, max_retries).
    """

    name = "openai"
    provider = "OpenAI"
    default_model = DEFAULT_MODEL
    key_env = ("OPENAI_API_KEY",)
    base_url_env = "OPENAI_BASE_URL"
    keyless_ok = True

    def __init__(self, model: str | None = None, *, base_url: str | None = None, **options: Any):
        if base_url:
            self.provider = "The OpenAI-compatible server"
        super().__init__(model, base_url=base_url, **options)

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
