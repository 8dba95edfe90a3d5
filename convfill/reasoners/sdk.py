"""What the cloud/server Reasoners share: key handling, one SDK-error mapper, and the streaming template.

`openai.py`, `anthropic.py` and `gemini.py` each only translate a `ReasonerRequest` into their SDK's
streaming call and pull text out of its events. Everything that must behave the same for every provider
lives here, once:

* keys: routed by one rule (`route_key`: an environment key only ever goes to its own provider's
  endpoint), kept in a `Secret` whose repr is masked, and scrubbed from every message we build
  (providers echo parts of a rejected key in their error bodies);
* errors: `to_reasoner_error` maps any of the three SDKs' exceptions (and the httpx transport errors under
  them) onto the `ReasonerError` categories by status code, error type and class name, without importing
  the SDKs, so a provider module never writes its own except-ladder;
* streaming: `SDKReasoner.stream` opens the provider stream inside `aclosing`, so cancelling a turn (barge-in)
  closes the HTTP response instead of leaving it to the garbage collector.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..errors import ConfigError, MissingKeyError, ReasonerError
from .base import DIRECT_SYSTEM_PROMPT, KNOWLEDGE_SYSTEM_PROMPT, Reasoner, ReasonerRequest, ReasonerSpec

# Tokens that look like provider keys, redacted even when they are not the configured key (a 401 body may
# echo a different, wrongly pasted key).
_KEYLIKE = re.compile(r"\b(?:sk-[A-Za-z0-9_\-]{6,}|AIza[0-9A-Za-z_\-]{10,})")
_MAX_SERVER_TEXT = 240  # characters of a provider's own error message worth showing


class Secret:
    """An API key that never prints itself: `repr`/`str` are masked, `reveal()` hands it to the SDK."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)


def resolve_key(explicit: str | None, env_vars: Sequence[str]) -> tuple[Secret | None, str | None]:
    """The key to use and where it came from ("argument" or the env var name); (None, None) if absent."""
    if explicit:
        return Secret(explicit), "argument"
    for var in env_vars:
        value = os.environ.get(var, "").strip()
        if value:
            return Secret(value), var
    return None, None


NO_KEY = "no-key-required"  # placeholder for servers without auth (the SDKs insist on some key)


def route_key(provider: str, env_vars: Sequence[str], *, explicit: str | None, named_env: str | None,
              custom_endpoint: bool, keyless_ok: bool) -> tuple[Secret, str]:
    """THE key rule, for every provider, the CLI, the app and the generator alike.

    * A key given for this call (typed in the app, `api_key=`) goes wherever the call goes.
    * A key named by the caller (`--api-key-env VAR`) likewise: the caller chose it for this endpoint.
    * The provider's environment key (`OPENAI_API_KEY`, ...) only goes to that provider's own endpoint:
      its default, or the one the operator set in the environment (`OPENAI_BASE_URL`, ...). A custom Base
      URL never receives it: it gets no key (OpenAI-compatible servers often need none) or the call fails.

    Returns (key, source): source is "argument", the variable's name, or "none" for the placeholder.
    """
    if explicit:
        return Secret(explicit), "argument"
    if named_env:
        key, source = resolve_key(None, (named_env,))
        if key is None:
            raise MissingKeyError(provider, (named_env,))
        return key, source
    if not custom_endpoint:
        key, source = resolve_key(None, env_vars)
        if key is None:
            raise MissingKeyError(provider, tuple(env_vars))
        return key, source
    if keyless_ok:
        return Secret(NO_KEY), "none"
    raise MissingKeyError(provider, tuple(env_vars), custom_endpoint=True)


def safe_url(url: str | None) -> str | None:
    """`url` without user:password and query string, fit for logs and the UI."""
    if not url:
        return url
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def scrub(text: str, secrets: Sequence[Secret | None] = ()) -> str:
    """`text` with the given secrets and anything key-shaped replaced by "[redacted]"."""
    for s in secrets:
        if s:
            text = text.replace(s.reveal(), "[redacted]")
    return _KEYLIKE.sub("[redacted]", text)


def probe(url: str, timeout_s: float = 1.0) -> tuple[bool, str]:
    """Whether an HTTP server answers at `url` (any status counts: a 401 still proves it is up)."""
    import httpx

    try:
        r = httpx.get(url, timeout=timeout_s)
    except httpx.HTTPError as e:
        return False, f"no server at {safe_url(url)} ({type(e).__name__})"
    return True, f"server reachable at {safe_url(url)} (HTTP {r.status_code})"


def alternating(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    """Chat messages as strict user/assistant alternation starting with the user (Anthropic and Gemini
    reject anything else): drops system and empty messages, merges neighbours with the same role."""
    out: list[dict[str, str]] = []
    for m in messages:
        if m["role"] == "system" or not m["content"].strip():
            continue
        if out and out[-1]["role"] == m["role"]:
            out[-1] = {"role": m["role"], "content": out[-1]["content"] + "\n" + m["content"]}
        elif out or m["role"] == "user":
            out.append(dict(m))
    return out


# --------------------------------------------------------------------------------------- error mapping
_KIND_CATEGORY = {
    # Anthropic error types, OpenAI error types/codes, Google RPC statuses (lowercased).
    "authentication_error": "auth", "permission_error": "auth", "invalid_api_key": "auth",
    "unauthenticated": "auth", "permission_denied": "auth", "api_key_invalid": "auth",
    "rate_limit_error": "rate_limit", "rate_limit_exceeded": "rate_limit", "insufficient_quota": "rate_limit",
    "resource_exhausted": "rate_limit",
    "overloaded_error": "server", "api_error": "server", "server_error": "server", "internal": "server",
    "unavailable": "server",
    "timeout_error": "timeout", "deadline_exceeded": "timeout",
}

# Exception class names (anywhere in the MRO) -> category, most specific first. Names are shared by the
# stainless SDKs (openai, anthropic), httpx/httpx2 and the standard library.
_CLASS_CATEGORY = (
    ("APITimeoutError", "timeout"), ("TimeoutException", "timeout"), ("TimeoutError", "timeout"),
    ("APIResponseValidationError", "malformed"), ("JSONDecodeError", "malformed"),
    ("UnknownApiResponseError", "malformed"), ("ValidationError", "malformed"),
    ("APIConnectionError", "network"), ("TransportError", "network"), ("ConnectionError", "network"),
    ("OSError", "network"),
)


def _status(e: BaseException) -> int | None:
    status = getattr(e, "status_code", None)  # openai / anthropic APIStatusError
    if not isinstance(status, int):
        status = getattr(e, "code", None)  # google-genai APIError (openai's APIError.code is a str)
    return status if isinstance(status, int) and status >= 400 else None


def _error_body(e: BaseException) -> dict:
    body = getattr(e, "body", None)  # openai / anthropic
    if body is None:
        body = getattr(e, "details", None)  # google-genai
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        body = body["error"]
    return body if isinstance(body, dict) else {}


def _kind(e: BaseException, body: dict) -> str | None:
    # Google puts the precise reason (a bad key is a 400 "API_KEY_INVALID") in google.rpc.ErrorInfo details.
    details = body.get("details")
    reasons = [d.get("reason") for d in details if isinstance(d, dict)] if isinstance(details, list) else []
    for value in (*reasons, body.get("type"), body.get("code"), body.get("status"), getattr(e, "status", None)):
        if isinstance(value, str) and value.lower() in _KIND_CATEGORY:
            return value.lower()
    return None


def _category(e: BaseException, status: int | None, kind: str | None) -> str:
    if status is not None:
        if status in (401, 403):
            return "auth"
        if status == 429:
            return "rate_limit"
        if status in (408, 504):
            return "timeout"
        if status >= 500:  # includes Anthropic's 529 "overloaded"
            return "server"
    if kind:  # a 400 with a known reason, or an error event inside a 200 stream
        return _KIND_CATEGORY[kind]
    if status is not None:
        return "unknown"  # 400 / 404 / 422: a bad model name or parameter
    names = {c.__name__ for c in type(e).__mro__}
    for name, category in _CLASS_CATEGORY:
        if name in names:
            return category
    if isinstance(e, ValueError):  # SDK parsers raise plain ValueError/KeyError on garbage
        return "malformed"
    return "unknown"


_WHAT = {
    "auth": "rejected the API key",
    "rate_limit": "is rate limiting us or the quota is used up",
    "timeout": "did not answer in time",
    "network": "could not be reached or dropped the connection",
    "malformed": "sent a response we could not read",
    "server": "had a server error",
    "unknown": "returned an error",
}


def to_reasoner_error(e: BaseException, provider: str, key_hint: str | None = None,
                      secrets: Sequence[Secret | None] = ()) -> ReasonerError:
    """Map an SDK (or transport) exception to a `ReasonerError` whose message carries no secret.

    Args:
        e: the exception the SDK raised.
        provider: who failed, as the user should read it ("OpenAI", "the server at http://...").
        key_hint: what to check after an auth failure (e.g. "Check OPENAI_API_KEY.").
        secrets: keys to scrub from anything the provider echoed back.
    """
    status, body = _status(e), _error_body(e)
    kind = _kind(e, body)
    category = _category(e, status, kind)
    msg = f"{provider} {_WHAT[category]}"
    if status is not None:
        msg += f" (HTTP {status})"
    msg += f" [{type(e).__name__}]"
    if category == "auth":
        # The provider's text may quote a prefix/suffix of the key: never show it.
        msg += "." + (f" {key_hint}" if key_hint else "")
    else:
        detail = body.get("message") or getattr(e, "message", None) or (str(e) if status is None else "")
        detail = scrub(" ".join(str(detail).split()), secrets)[:_MAX_SERVER_TEXT]  # scrub, then cut
        if detail:
            msg += f": {detail}"
    return ReasonerError(scrub(msg, secrets), category)


# ------------------------------------------------------------------------------------------- base class
class SDKReasoner(Reasoner):
    """Base for Reasoners that call a provider SDK. Subclasses set the class attributes and implement
    `_make_client` and `_deltas`.

    Args:
        model: provider model name.
        api_key: the key for this session; None reads the provider's environment variable(s).
        base_url: another endpoint speaking the provider's API (a proxy, a compatible server, a test server).
        system: the instruction sent as system prompt; None picks the knowledge prompt, or the direct prompt
            when `direct` is set.
        direct: Reasoner-alone baseline: answer the user conversationally instead of supplying facts.
        max_tokens: answer length cap.
        temperature: sampling temperature; None leaves the provider default (some models accept no other).
        timeout_s: SDK timeout (connect, and each wait for bytes), so a stalled stream fails as "timeout".
        max_retries: SDK retries on 429/5xx/connection errors before the first byte; kept low because a
            user is waiting for speech.
    """

    provider = "provider"  # as users read it in messages
    default_model = ""
    key_env: tuple[str, ...] = ()
    base_url_env: str | None = None  # the operator's endpoint for this provider (the SDK's own variable)
    keyless_ok = False  # a custom endpoint may be called without a key (OpenAI-compatible servers)

    def __init__(self, model: str | None = None, *, api_key: str | None = None, base_url: str | None = None,
                 api_key_env: str | None = None, system: str | None = None, direct: bool = False,
                 max_tokens: int = 256, temperature: float | None = None, timeout_s: float = 30.0,
                 max_retries: int = 1):
        self.model = (model or self.default_model).strip()
        if not self.model:
            raise ConfigError(f"{self.provider}: the model name is empty")
        if max_tokens < 1:
            raise ConfigError(f"{self.provider}: max_tokens must be >= 1, got {max_tokens}")
        if timeout_s <= 0:
            raise ConfigError(f"{self.provider}: timeout_s must be > 0, got {timeout_s}")
        if max_retries < 0:
            raise ConfigError(f"{self.provider}: max_retries must be >= 0, got {max_retries}")
        self.custom_endpoint = bool(base_url)
        endpoint = base_url or (os.environ.get(self.base_url_env, "").strip() if self.base_url_env else "")
        self.base_url = endpoint.rstrip("/") if endpoint else None
        self.api_key_env = api_key_env
        self.direct = direct
        self.system = system if system is not None else (DIRECT_SYSTEM_PROMPT if direct else
                                                         KNOWLEDGE_SYSTEM_PROMPT)
        self.max_tokens, self.temperature = max_tokens, temperature
        self.timeout_s, self.max_retries = timeout_s, max_retries
        self._key, self.key_source = route_key(self.provider, self.key_env, explicit=api_key,
                                               named_env=api_key_env, custom_endpoint=self.custom_endpoint,
                                               keyless_ok=self.keyless_ok)
        self._client: Any = None
        self._client_loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def from_spec(cls, spec: ReasonerSpec) -> "SDKReasoner":
        """Takes model, base_url, api_key, api_key_env, direct and max_tokens (a simulated delay has no
        meaning here)."""
        extra = {"max_tokens": spec.max_tokens} if spec.max_tokens else {}
        return cls(spec.model.strip() or None, base_url=spec.base_url.strip() or None,
                   api_key=spec.api_key.strip() or None, api_key_env=spec.api_key_env.strip() or None,
                   direct=spec.direct, **extra)

    # ---------------------------------------------------------------------------- provider hooks
    def _make_client(self) -> Any:
        """A new async SDK client (bound to the running event loop by its connection pool)."""
        raise NotImplementedError

    async def _close_client(self, client: Any) -> None:
        await client.close()

    def _deltas(self, client: Any, request: ReasonerRequest) -> AsyncIterator[str]:
        """Text deltas from one streaming call; raise ReasonerError if the stream ends incomplete."""
        raise NotImplementedError

    # ----------------------------------------------------------------------------------- shared
    @property
    def label(self) -> str:
        """Who answers, as error messages name it."""
        return f"{self.provider} (at {safe_url(self.base_url)})" if self.base_url else self.provider

    @property
    def key_hint(self) -> str | None:
        if self.key_source == "none":
            return "The server wants a key: enter one for it, or name its variable with --api-key-env."
        if self.key_source in (None, "argument"):
            return "Check the API key you entered."
        return f"Check {self.key_source}."

    def _client_for_loop(self) -> Any:
        # An SDK client's connection pool belongs to the event loop it first ran on; the CLI and tests may
        # run turns on different loops, so keep one client per loop (the old one died with its loop).
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            self._client, self._client_loop = self._make_client(), loop
        return self._client

    async def stream(self, request: ReasonerRequest) -> AsyncIterator[str]:
        try:
            client = self._client_for_loop()
            # aclosing: when the engine cancels or closes us at a yield, the SDK stream's context managers
            # run now (closing the HTTP response), not whenever the generator is collected.
            async with aclosing(self._deltas(client, request)) as deltas:
                async for delta in deltas:
                    if delta:
                        yield delta
        except ReasonerError:
            raise
        except Exception as e:
            # `from None`: the SDK exception holds the request (headers with the key) and raw bodies.
            raise to_reasoner_error(e, self.label, self.key_hint, (self._key,)) from None

    def incomplete(self) -> ReasonerError:
        """The error for a stream that ended without the provider's end marker (a cut connection)."""
        return ReasonerError(f"{self.label} ended the stream before the answer was complete", "network")

    async def aclose(self) -> None:
        client, self._client = self._client, None
        loop, self._client_loop = self._client_loop, None
        if client is not None and loop is asyncio.get_running_loop():
            await self._close_client(client)

    def describe(self) -> dict:
        return {**super().describe(), "base_url": safe_url(self.base_url), "direct": self.direct}

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(model={self.model!r}, base_url={safe_url(self.base_url)!r}, "
                f"direct={self.direct})")

    @classmethod
    def key_status(cls) -> tuple[bool, str]:
        """(usable, detail) from the environment alone; the detail names the variable, never the key."""
        _, source = resolve_key(None, cls.key_env)
        if source:
            return True, f"{source} is set"
        return False, f"set {' or '.join(cls.key_env)}"
