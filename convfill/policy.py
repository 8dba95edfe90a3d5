"""What a visitor of the app may ask the server to do: public mode vs local use.

Locally every option is open. In public mode (on a Hugging Face Space by default, where anyone can open
the page) a visitor's input cannot make the server fetch from hosts the operator did not name, load
files the operator did not offer, or learn which provider keys the server holds:

* a custom Base URL is accepted only for a host in `CONVFILL_ALLOWED_HOSTS` (comma-separated `host` or
  `host:port`); otherwise the provider's own endpoint is used;
* a Talker or local-Reasoner model is accepted only from the offered choices and `CONVFILL_ALLOWED_MODELS`;
* the Reasoner list says "available" / "unavailable", never which variable is set;
* `Limits` bound what one turn may cost (message tokens, knowledge size, turn length) and how many turns
  talk at once; each is an environment setting with a public default.

`CONVFILL_PUBLIC=1|0` switches it explicitly; without it, public mode is on when `SPACE_ID` is set (as on
every Space). The CLI applies no policy: its user owns the machine.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import urlsplit

from .errors import ConfigError

PUBLIC_ENV, HOSTS_ENV, MODELS_ENV = "CONVFILL_PUBLIC", "CONVFILL_ALLOWED_HOSTS", "CONVFILL_ALLOWED_MODELS"
CHAT_ENV = "CONVFILL_CHAT"
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


class PolicyError(ConfigError):
    """A visitor asked for something public mode does not allow; the message says what is allowed."""


def _split(value: str | None) -> tuple[str, ...]:
    return tuple(v.strip() for v in (value or "").split(",") if v.strip())


def parse_base_url(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of an http(s) URL; ConfigError for anything else (file:, credentials, junk)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as e:
        raise ConfigError(f"Base URL is not a valid URL: {e}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError("Base URL must be an http:// or https:// URL with a host")
    if parts.username or parts.password:
        raise ConfigError("Base URL must not contain a user name or password; enter the key in its own box")
    return parts.scheme, parts.hostname.lower(), port


def _env_number(name: str, default, cast):
    """A limit from the environment: a number, or `none`/`off` for no limit."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if raw.lower() in ("none", "off"):
        return None
    try:
        return cast(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None


@dataclass(frozen=True)
class Limits:
    """What one visitor's turn may cost, and how many turns the server runs at once. None = no limit.

    Each is an environment variable (`CONVFILL_MAX_USER_TOKENS`, ...; `none` lifts it); public mode has
    defaults sized for a 2-core CPU Space, local use has none but the model cache.

    Parameters:
        max_user_tokens: a message's length in Talker tokens (bounds its prefill: ~2 ms per token here).
        max_knowledge_chars: the oracle's knowledge text.
        max_turn_s, max_phrases, max_phrase_tokens, max_fillers: caps on the engine settings a visitor sets.
        max_active_turns: turns talking at once, server-wide; a visitor beyond it is told the server is busy.
        max_models: loaded Talkers kept in memory (least recently used ones are dropped).
    """

    max_user_tokens: int | None = None
    max_knowledge_chars: int | None = None
    max_turn_s: float | None = None
    max_phrases: int | None = None
    max_phrase_tokens: int | None = None
    max_fillers: int | None = None
    max_active_turns: int | None = None
    max_models: int = 4

    @classmethod
    def from_env(cls, public: bool) -> "Limits":
        d = PUBLIC_LIMITS if public else cls()
        return cls(**{f: _env_number(f"CONVFILL_{f.upper()}", getattr(d, f), float if f == "max_turn_s" else int)
                      for f in cls.__dataclass_fields__})

    def engine_caps(self) -> dict[str, float]:
        """`EngineConfig` field -> the largest value a visitor may set (the UI's controls stop there)."""
        caps = {"turn_timeout_s": self.max_turn_s, "max_phrases": self.max_phrases,
                "max_phrase_tokens": self.max_phrase_tokens, "max_fillers": self.max_fillers}
        return {k: v for k, v in caps.items() if v is not None}

    def check_engine(self, config) -> None:
        """PolicyError naming the first engine setting above its cap."""
        for field, cap in self.engine_caps().items():
            if getattr(config, field) > cap:
                raise PolicyError(f"This server allows {field} up to {cap:g}; you asked for "
                                  f"{getattr(config, field):g}.")

    def check_knowledge(self, text: str) -> None:
        if self.max_knowledge_chars is not None and len(text) > self.max_knowledge_chars:
            raise PolicyError(f"Oracle knowledge is {len(text):,} characters; this server takes up to "
                              f"{self.max_knowledge_chars:,}.")

    def check_user_tokens(self, n_tokens: int) -> None:
        if self.max_user_tokens is not None and n_tokens > self.max_user_tokens:
            raise PolicyError(f"Message is {n_tokens:,} tokens long; this server takes up to "
                              f"{self.max_user_tokens:,}. Shorten it and send again.")


PUBLIC_LIMITS = Limits(max_user_tokens=256, max_knowledge_chars=4000, max_turn_s=120.0, max_phrases=40,
                       max_phrase_tokens=64, max_fillers=10, max_active_turns=4, max_models=2)


@dataclass(frozen=True)
class Policy:
    """Parameters:
        public: apply the public-mode rules.
        allowed_hosts: hosts (optionally `host:port`) a custom Base URL may name in public mode.
        allowed_models: model paths / hub ids a visitor may name besides the offered choices.
        limits: what a turn may cost (`Limits`).
    """

    public: bool = False
    allowed_hosts: tuple[str, ...] = ()
    allowed_models: tuple[str, ...] = ()
    limits: Limits = Limits()
    chat: str = "all"  # "all" or "signed-in": who may chat in public mode (CONVFILL_CHAT)

    @classmethod
    def from_env(cls) -> "Policy":
        flag = os.environ.get(PUBLIC_ENV, "").strip().lower()
        if flag in _TRUE:
            public = True
        elif flag in _FALSE:
            public = False
        elif flag:
            raise ConfigError(f"{PUBLIC_ENV}={flag!r}: use 1 or 0")
        else:
            public = bool(os.environ.get("SPACE_ID"))
        chat = os.environ.get(CHAT_ENV, "all").strip().lower() or "all"
        if chat not in ("all", "signed-in"):
            raise ConfigError(f"{CHAT_ENV}={chat!r}: use all or signed-in")
        return cls(public, tuple(h.lower() for h in _split(os.environ.get(HOSTS_ENV))),
                   _split(os.environ.get(MODELS_ENV)), Limits.from_env(public), chat)

    def check_may_chat(self, signed_in: bool) -> None:
        if self.public and self.chat == "signed-in" and not signed_in:
            raise PolicyError("Sign in to chat on this server (its operator allows signed-in visitors only).")

    def check_base_url(self, url: str) -> str:
        """`url` stripped, or PolicyError / ConfigError. Blank means the provider's own endpoint."""
        url = (url or "").strip()
        if not url:
            return ""
        _, host, port = parse_base_url(url)
        if self.public and host not in self.allowed_hosts and f"{host}:{port}" not in self.allowed_hosts:
            raise PolicyError("Custom Base URLs are disabled on this public server"
                              + (" except for the hosts its operator allows." if self.allowed_hosts else ".")
                              + " Leave the Base URL empty to use the provider's own endpoint.")
        return url

    def check_model(self, text: str, offered: tuple[str, ...] = (), what: str = "model") -> str:
        """`text` stripped when a visitor may load it, else PolicyError (blank = the default)."""
        text = (text or "").strip()
        if not self.public or not text or text in offered or text in self.allowed_models:
            return text
        raise PolicyError(f"This public server only loads the {what}s it offers; pick one from the list.")

    def reasoner_label(self, name: str, usable: bool, detail: str) -> str:
        """The Reasoner dropdown label: details (which key is set) only for local use."""
        if self.public:
            return f"{name} ({'available' if usable else 'unavailable'})"
        return f"{name} ({detail})" if usable else f"{name} (unavailable: {detail})"
