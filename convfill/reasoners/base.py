"""The Reasoner interface: a large (or slow) model that streams knowledge text for the Talker.

`Reasoner.stream(request)` yields raw text deltas; the engine turns them into sentence chunks
(`convfill.chunker`). Providers live one per module beside this file and raise `ReasonerError` with a
category, which the engine turns into an honest Talker phrase.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

# The knowledge-source instruction shared by every chat-model Reasoner (overridable per Reasoner).
KNOWLEDGE_SYSTEM_PROMPT = (
    "You are the knowledge source behind a voice assistant. A small model speaks to the user; you only "
    "supply facts it will say. Answer the user's latest message with short, standalone sentences, one idea "
    "each, most important first. Spell out numbers and symbols as words would be spoken. No greetings, no "
    "chit-chat, no lists, no markdown, no questions back unless the request is ambiguous. At most five "
    "sentences."
)

# The Reasoner-alone baseline (evaluation): the large model answers the user itself, as a voice assistant
# would, so its time to first token can be compared with the Talker's.
DIRECT_SYSTEM_PROMPT = (
    "You are a helpful voice assistant talking with the user. Answer conversationally and concisely, in "
    "plain spoken sentences. Spell out numbers and symbols as words would be spoken. No lists, no markdown."
)


@dataclass(frozen=True)
class Message:
    """One message of the conversation the Reasoner sees ("user" or "assistant" = what the Talker said)."""

    role: str
    content: str


@dataclass(frozen=True)
class ReasonerRequest:
    """What a Reasoner answers.

    Parameters:
        user: the current user message (sanitised).
        history: earlier messages, oldest first, already bounded by the engine.
    """

    user: str
    history: tuple[Message, ...] = field(default_factory=tuple)

    def chat_messages(self, system: str | None = KNOWLEDGE_SYSTEM_PROMPT) -> list[dict[str, str]]:
        """OpenAI-style message dicts: optional system, the history, the current user message."""
        msgs = [{"role": "system", "content": system}] if system else []
        msgs += [{"role": m.role, "content": m.content} for m in self.history]
        msgs.append({"role": "user", "content": self.user})
        return msgs


@dataclass(frozen=True)
class ReasonerSpec:
    """What the CLI, the app and evaluation can say about the Reasoner to build. Each Reasoner class
    declares which fields it reads in its `from_spec`; `convfill.reasoners.build_reasoner` is the one
    place a spec becomes a Reasoner.

    Parameters:
        name: registry name (`convfill.reasoners.REASONERS`).
        model: provider model name, or a GGUF path for `local` (blank: its default).
        base_url: a custom endpoint (cloud Reasoners); blank = the provider's own.
        api_key: a key for this call only (typed in the app); never stored, never in `repr`.
        api_key_env: the variable holding the key for `base_url` (CLI `--api-key-env`).
        knowledge: the text the oracle streams.
        delay_s: oracle: seconds before its first chunk; local: a simulated network delay. None: default.
        gap_s: oracle: seconds between chunks. None: default.
        direct: answer the user directly (the Reasoner-alone baseline) instead of supplying facts.
        max_tokens: answer length cap (model-backed Reasoners). None: the Reasoner's default.
    """

    name: str = "local"
    model: str = ""
    base_url: str = ""
    api_key: str = field(default="", repr=False)
    api_key_env: str = ""
    knowledge: str = ""
    delay_s: float | None = None
    gap_s: float | None = None
    direct: bool = False
    max_tokens: int | None = None


class Reasoner:
    """Base class. Subclasses set `name` (registry key), implement `stream` and `from_spec`."""

    name = "base"
    model = ""

    @classmethod
    def from_spec(cls, spec: ReasonerSpec) -> "Reasoner":
        """Build from the spec fields this Reasoner takes (the others are ignored)."""
        raise NotImplementedError

    def stream(self, request: ReasonerRequest) -> AsyncIterator[str]:
        """Async iterator of text deltas answering `request`; raises ReasonerError on failure."""
        raise NotImplementedError

    def describe(self) -> dict:
        """What gets logged about this Reasoner: name and model, never keys."""
        return {"reasoner": self.name, "model": self.model}

    async def aclose(self) -> None:
        """Release clients and connections (optional)."""
