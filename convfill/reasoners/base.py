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


class Reasoner:
    """Base class. Subclasses set `name` (registry key) and implement `stream`."""

    name = "base"
    model = ""

    def stream(self, request: ReasonerRequest) -> AsyncIterator[str]:
        """Async iterator of text deltas answering `request`; raises ReasonerError on failure."""
        raise NotImplementedError

    def describe(self) -> dict:
        """What gets logged about this Reasoner: name and model, never keys."""
        return {"reasoner": self.name, "model": self.model}

    async def aclose(self) -> None:
        """Release clients and connections (optional)."""
