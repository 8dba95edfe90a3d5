"""What a visitor of the app may ask the server to do: public mode vs local use.

Locally every option is open. In public mode (on a Hugging Face Space by default, where anyone can open
the page) a visitor's input cannot make the server fetch from hosts the operator did not name, load
files the operator did not offer, or learn which provider keys the server holds:

* a custom Base URL is accepted only for a host in `CONVFILL_ALLOWED_HOSTS` (comma-separated `host` or
  `host:port`); otherwise the provider's own endpoint is used;
* a Talker or local-Reasoner model is accepted only from the offered choices and `CONVFILL_ALLOWED_MODELS`;
* the Reasoner list says "available" / "unavailable", never which variable is set.

`CONVFILL_PUBLIC=1|0` switches it explicitly; without it, public mode is on when `SPACE_ID` is set (as on
every Space). The CLI applies no policy: its user owns the machine.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import urlsplit

from .errors import ConfigError

PUBLIC_ENV, HOSTS_ENV, MODELS_ENV = "CONVFILL_PUBLIC", "CONVFILL_ALLOWED_HOSTS", "CONVFILL_ALLOWED_MODELS"
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


@dataclass(frozen=True)
class Policy:
    """Parameters:
        public: apply the public-mode rules.
        allowed_hosts: hosts (optionally `host:port`) a custom Base URL may name in public mode.
        allowed_models: model paths / hub ids a visitor may name besides the offered choices.
    """

    public: bool = False
    allowed_hosts: tuple[str, ...] = ()
    allowed_models: tuple[str, ...] = ()

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
        return cls(public, tuple(h.lower() for h in _split(os.environ.get(HOSTS_ENV))),
                   _split(os.environ.get(MODELS_ENV)))

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
