"""The Gemini Reasoner: Google's `google-genai` SDK, `client.aio.models.generate_content_stream`.

Not the legacy `google.generativeai` package. Gemini names the assistant role "model", takes the system
prompt as `system_instruction`, and (2.5 Flash) thinks before answering unless told not to, which would
add seconds before the first chunk; `thinking_budget=0` turns that off by default.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

try:
    from google import genai
    from google.genai import types
except ImportError as e:  # pragma: no cover - google-genai is in requirements.txt
    raise ImportError("The gemini Reasoner needs the SDK: pip install google-genai", name="google-genai") from e

from ..errors import ReasonerError
from .base import ReasonerRequest
from .sdk import SDKReasoner, alternating

DEFAULT_MODEL = "gemini-2.5-flash"


class GeminiReasoner(SDKReasoner):
    """Knowledge from Gemini (Gemini API with an API key; Vertex AI is not wired up).

    Args:
        model: model name (default gemini-2.5-flash).
        thinking_budget: thinking tokens before answering; 0 (default) answers at once, None leaves the
            model default (Pro models cannot turn thinking off).
        **options: see `SDKReasoner` (api_key or GEMINI_API_KEY/GOOGLE_API_KEY, base_url, system, direct,
            max_tokens, temperature, timeout_s, max_retries).
    """

    name = "gemini"
    provider = "Gemini"
    default_model = DEFAULT_MODEL
    key_env = ("GEMINI_API_KEY", "GOOGLE_API_KEY")
    base_url_env = "GOOGLE_GEMINI_BASE_URL"

    def __init__(self, model: str | None = None, *, thinking_budget: int | None = 0, **options: Any):
        self.thinking_budget = thinking_budget
        super().__init__(model, **options)

    def _make_client(self) -> Any:
        retry = types.HttpRetryOptions(attempts=self.max_retries + 1) if self.max_retries else None
        http = types.HttpOptions(base_url=self.base_url, timeout=int(self.timeout_s * 1000),  # milliseconds
                                 retry_options=retry)
        # vertexai=False: never pick up GOOGLE_GENAI_USE_VERTEXAI and cloud credentials from the environment.
        return genai.Client(api_key=self._key.reveal(), vertexai=False, http_options=http)

    async def _close_client(self, client: Any) -> None:
        await client.aio.aclose()

    def _contents(self, request: ReasonerRequest) -> list[types.Content]:
        return [types.Content(role="model" if m["role"] == "assistant" else "user",
                              parts=[types.Part(text=m["content"])])
                for m in alternating(request.chat_messages(None))]

    async def _deltas(self, client: Any, request: ReasonerRequest) -> AsyncIterator[str]:
        config = types.GenerateContentConfig(
            system_instruction=self.system or None, max_output_tokens=self.max_tokens,
            temperature=self.temperature,
            thinking_config=(types.ThinkingConfig(thinking_budget=self.thinking_budget)
                             if self.thinking_budget is not None else None))
        finished = False
        stream = await client.aio.models.generate_content_stream(model=self.model,
                                                                 contents=self._contents(request),
                                                                 config=config)
        async with aclosing(stream) as chunks:  # the SDK generator's `finally` closes the HTTP response
            async for chunk in chunks:
                feedback = chunk.prompt_feedback
                if feedback is not None and feedback.block_reason:
                    raise ReasonerError(f"{self.label} refused the request ({feedback.block_reason})", "unknown")
                for cand in (chunk.candidates or ())[:1]:
                    for part in (cand.content.parts if cand.content else None) or ():
                        if part.text and not part.thought:
                            yield part.text
                    finished = finished or cand.finish_reason is not None
        if not finished:
            raise self.incomplete()

    @classmethod
    def available(cls) -> tuple[bool, str]:
        """Usable when GEMINI_API_KEY or GOOGLE_API_KEY is set (the key itself is never shown)."""
        return cls.key_status()
