"""The project's error taxonomy, converted to messages only at the edges (CLI, app, engine events).

No message or repr built here may carry an API key: errors name the environment variable instead.
"""

from __future__ import annotations

import os
import sys


class ConvFillError(Exception):
    """Base class for every error the project raises on purpose."""


class ConfigError(ConvFillError):
    """Invalid options or arguments (bad value, unknown name)."""


class UnknownReasonerError(ConfigError):
    def __init__(self, name: str, valid: list[str]):
        super().__init__(f"Unknown reasoner {name!r}. Valid reasoners: {', '.join(sorted(valid))}")
        self.name, self.valid = name, valid


class UnknownTalkerError(ConfigError):
    def __init__(self, name: str, valid: list[str]):
        super().__init__(f"Unknown talker runtime {name!r}. Valid runtimes: {', '.join(sorted(valid))}")
        self.name, self.valid = name, valid


class ReasonerError(ConvFillError):
    """A Reasoner failed. `category` drives retry decisions and the honest phrase the Talker says.

    Categories: missing_key, auth, rate_limit, timeout, network, malformed, server, unknown.
    """

    PERMANENT = frozenset({"missing_key", "auth", "malformed"})

    def __init__(self, message: str, category: str = "unknown"):
        super().__init__(message)
        self.category = category

    @property
    def is_permanent(self) -> bool:
        return self.category in self.PERMANENT


class MissingKeyError(ReasonerError):
    """No API key: the message names the environment variable to set, never a key."""

    def __init__(self, provider: str, env_vars: tuple[str, ...], custom_endpoint: bool = False):
        names = " or ".join(env_vars)
        if custom_endpoint:
            msg = (f"No API key for {provider} at a custom Base URL: enter a key for that server. {names} is "
                   f"only ever sent to {provider}'s own endpoint.")
        else:
            msg = f"No API key for {provider}. Set {names} in the environment (or paste a key in the app)."
        super().__init__(msg, category="missing_key")
        self.provider, self.env_vars = provider, env_vars


class TalkerLoadError(ConvFillError):
    """A Talker model could not be found or loaded."""


class VoiceError(ConvFillError):
    """A speech part (ASR or TTS) failed while working. `category` as in `ReasonerError` (auth, timeout, ...)."""

    def __init__(self, message: str, category: str = "unknown"):
        super().__init__(message)
        self.category = category


class VoiceLoadError(VoiceError):
    """A speech model (Whisper, a Piper voice) could not be found, assembled or loaded."""

    def __init__(self, message: str, category: str = "load"):
        super().__init__(message, category)


class InputError(ConvFillError):
    """User input that cannot be used as is (empty, too long)."""


def error_line(e: BaseException) -> str:
    """One line for the user: an OSError names the file, anything else is its message."""
    if isinstance(e, OSError) and not isinstance(e, ConvFillError):
        return f"Error: {e.strerror or e}: {e.filename or ''}".rstrip(": ")
    return f"Error: {e}"


def run_command(fn, args, catch: tuple[type[BaseException], ...] = (ConvFillError,)) -> int:
    """The edge shared by every `python -m` CLI of the project: `catch`-ed errors print one line and exit
    1 (CONVFILL_DEBUG=1 re-raises them with the traceback); Ctrl-C exits 130."""
    try:
        code = fn(args)
    except catch as e:
        if os.environ.get("CONVFILL_DEBUG"):
            raise
        print(error_line(e), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code if isinstance(code, int) else 0
