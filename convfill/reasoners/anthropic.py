"""The Anthropic Reasoner: Claude through the official `anthropic` SDK's Messages streaming.

Claude takes the system prompt as its own parameter and wants strict user/assistant alternation, so the
engine's history goes through `sdk.alternating` (an empty Talker reply would otherwise be a 400).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

try:
    import anthropic
except ImportError as e:  # pragma: no cover - anthropic is in requirements.txt
    raise ImportError("The anthropic Reasoner needs the SDK: pip install anthropic", name="anthropic") from e

from .base import ReasonerRequest
from .sdk import SDKReasoner, alternating

DEFAULT_MODEL = "claude-haiku-4-5"  # the fastest current Claude; claude-sonnet-4-5 knows more, starts later


class AnthropicReasoner(SDKReasoner):
    """Knowledge from Claude.

    Args:
        model: model name (default claude-haiku-4-5).
        **options: see `SDKReasoner` (api_key or ANTHROPIC_API_KEY, base_url, system, direct, max_tokens,
            temperature, timeout_s, max_retries).
    """

    name = "anthropic"
    provider = "Anthropic"
    default_model = DEFAULT_MODEL
    key_env = ("ANTHROPIC_API_KEY",)
    base_url_env = "ANTHROPIC_BASE_URL"

    def _make_client(self) -> Any:
        return anthropic.AsyncAnthropic(api_key=self._key.reveal(), base_url=self.base_url,
                                        timeout=self.timeout_s, max_retries=self.max_retries)

    async def _deltas(self, client: Any, request: ReasonerRequest) -> AsyncIterator[str]:
        kwargs: dict[str, Any] = {"model": self.model, "max_tokens": self.max_tokens,
                                  "messages": alternating(request.chat_messages(None))}
        if self.system:
            kwargs["system"] = self.system
        if self.temperature is not None:
            kwargs["temperature"] = self.temperature
        finished = False
        async with client.messages.stream(**kwargs) as events:  # exit closes the HTTP response
            async for event in events:
                if event.type == "content_block_delta" and event.delta.type == "text_delta":
                    yield event.delta.text
                elif event.type == "message_stop":
                    finished = True
        if not finished:
            raise self.incomplete()

    @classmethod
    def available(cls) -> tuple[bool, str]:
        """Usable when ANTHROPIC_API_KEY is set (the key itself is never shown)."""
        return cls.key_status()
