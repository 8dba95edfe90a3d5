"""What `OpenAIASR` and `OpenAITTS` share: where the call goes, which key it carries, and how SDK errors read.

The rules are the Reasoners' (`reasoners.sdk`), reused rather than restated: `route_key` decides the key
(`OPENAI_API_KEY` only ever reaches OpenAI or the operator's `OPENAI_BASE_URL`; a custom `base_url` gets
the key given for it, or a placeholder), and `to_reasoner_error` turns any SDK exception into a message
with no key in it, raised here as a `VoiceError` with the same category.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..errors import ConfigError, ReasonerError, VoiceError, VoiceLoadError
from ..reasoners.sdk import route_key, safe_url, to_reasoner_error

KEY_ENV = ("OPENAI_API_KEY",)
BASE_URL_ENV = "OPENAI_BASE_URL"


class OpenAIEndpoint:
    """One OpenAI (or compatible) endpoint with its routed key and a lazily made, blocking SDK client."""

    def __init__(self, api_key: str | None = None, base_url: str | None = None, timeout_s: float = 30.0,
                 max_retries: int = 1):
        if timeout_s <= 0:
            raise ConfigError(f"timeout_s must be > 0, got {timeout_s}")
        self.custom_endpoint = bool(base_url)
        endpoint = base_url or os.environ.get(BASE_URL_ENV, "").strip()
        self.base_url = endpoint.rstrip("/") if endpoint else None
        self.provider = "The OpenAI-compatible server" if self.custom_endpoint else "OpenAI"
        try:
            self._key, self.key_source = route_key(self.provider, KEY_ENV, explicit=api_key, named_env=None,
                                                   custom_endpoint=self.custom_endpoint, keyless_ok=True)
        except ReasonerError as e:  # MissingKeyError: its message names the variable, never a key
            raise VoiceLoadError(str(e), category=e.category) from None
        self.timeout_s, self.max_retries = timeout_s, max_retries
        self._client: Any = None
        self._client_lock = threading.Lock()

    @property
    def label(self) -> str:
        return f"{self.provider} (at {safe_url(self.base_url)})" if self.base_url else self.provider

    def client(self) -> Any:
        """The blocking `openai.OpenAI` client (one per endpoint; the SDK's sync client is thread-safe)."""
        with self._client_lock:
            if self._client is None:
                try:
                    import openai
                except ImportError:
                    raise VoiceLoadError("the OpenAI voice needs the SDK: pip install openai") from None
                self._client = openai.OpenAI(api_key=self._key.reveal(), base_url=self.base_url,
                                             timeout=self.timeout_s, max_retries=self.max_retries)
            return self._client

    @contextmanager
    def errors(self) -> Iterator[None]:
        """Re-raise anything the SDK raises as a `VoiceError` whose message carries no key."""
        try:
            yield
        except VoiceError:
            raise
        except Exception as e:  # noqa: BLE001 - mapped to a category, the key scrubbed
            hint = "Check the API key you entered." if self.key_source == "argument" else \
                "The server wants a key: enter one for it." if self.key_source == "none" else \
                f"Check {self.key_source}."
            err = to_reasoner_error(e, self.label, hint, (self._key,))
            # `from None`: the SDK exception holds the request, headers (with the key) included.
            raise VoiceError(str(err), err.category) from None

    def describe(self) -> dict:
        return {"base_url": safe_url(self.base_url), "key_source": self.key_source}
