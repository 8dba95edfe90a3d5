"""Every timeline event of a turn, as frozen dataclasses (pure values).

The engine emits these; the CLI prints them (`--json`), the store persists them, the app draws them and
`convfill.metrics` folds them into latencies. One `to_dict`/`from_dict` pair serves all of them, so an
event looks the same in a terminal, in SQLite and in an evaluation record.

`t_ms` is milliseconds since the turn started, read from the engine's clock (monotonic).
`source` of a phrase is "sil" (a filler generated from `<sil>`), "chunk" (from knowledge chunk
`chunk_index`) or "error" (the honest phrase said when the Reasoner failed).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True)
class Event:
    """Base of all events.

    Parameters:
        t_ms: milliseconds since the start of the turn.
    """

    t_ms: float
    type: ClassVar[str] = "event"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict with a `type` key; inverse of `event_from_dict`."""
        return {"type": self.type, **dataclasses.asdict(self)}


_REGISTRY: dict[str, type[Event]] = {}


def _register(cls: type[Event]) -> type[Event]:
    cls.type = re.sub(r"(?<!^)(?=[A-Z])", "_", cls.__name__).lower().removesuffix("_event")
    _REGISTRY[cls.type] = cls
    return cls


def event_from_dict(d: dict[str, Any]) -> Event:
    """Rebuild an event from `Event.to_dict()` output (unknown keys are an error)."""
    d = dict(d)
    cls = _REGISTRY[d.pop("type")]
    return cls(**d)


EVENT_TYPES = _REGISTRY  # read-only view for docs and validation


@_register
@dataclass(frozen=True)
class TurnStarted(Event):
    """A user message started a turn.

    Parameters:
        turn_id: unique id of the turn (also the store key).
        user: the sanitised user text the Talker and Reasoner see.
        wall_time: Unix time of the start, for storage and display only (never for latency).
    """

    turn_id: str = ""
    user: str = ""
    wall_time: float = 0.0


@_register
@dataclass(frozen=True)
class ChunkArrived(Event):
    """The Reasoner produced a complete knowledge chunk.

    Parameters:
        chunk_index: 0-based position of the chunk in this turn.
        text: the chunk (sanitised).
    """

    chunk_index: int = 0
    text: str = ""


@_register
@dataclass(frozen=True)
class ReasonerEnded(Event):
    """The Reasoner's stream finished (normally, with an error, or cancelled).

    Parameters:
        n_chunks: how many chunks it produced.
        status: "done", "error" or "cancelled".
    """

    n_chunks: int = 0
    status: str = "done"


@_register
@dataclass(frozen=True)
class SilInjected(Event):
    """The engine decided to say a filler: `<sil>` goes in the knowledge block.

    Parameters:
        phrase_index: the phrase this `<sil>` will produce.
        reason: "turn_start" (first filler) or "silence" (nothing arrived for d seconds).
    """

    phrase_index: int = 0
    reason: str = "silence"


@_register
@dataclass(frozen=True)
class PhraseStarted(Event):
    """The Talker began generating a phrase (prompt submitted).

    Parameters:
        phrase_index: 0-based position of the phrase in this turn.
        source: "sil", "chunk" or "error".
        chunk_index: the knowledge chunk it comes from, or None.
    """

    phrase_index: int = 0
    source: str = "sil"
    chunk_index: int | None = None


@_register
@dataclass(frozen=True)
class FirstToken(Event):
    """The Talker produced the first token of a phrase (TTFT is measured to this).

    Parameters:
        phrase_index: the phrase.
    """

    phrase_index: int = 0


@_register
@dataclass(frozen=True)
class PhraseDelta(Event):
    """New text of a phrase being generated, for live streaming (not persisted by default).

    Parameters:
        phrase_index: the phrase.
        text: the new text only.
    """

    phrase_index: int = 0
    text: str = ""


@_register
@dataclass(frozen=True)
class PhraseEnded(Event):
    """A phrase is complete.

    Parameters:
        phrase_index: the phrase.
        text: the whole phrase, stripped.
        source: "sil", "chunk" or "error".
        chunk_index: the knowledge chunk it comes from, or None.
        n_tokens: generated tokens (0 for fixed phrases).
        cancelled: True when generation was cut short by barge-in or timeout.
    """

    phrase_index: int = 0
    text: str = ""
    source: str = "sil"
    chunk_index: int | None = None
    n_tokens: int = 0
    cancelled: bool = False


@_register
@dataclass(frozen=True)
class ErrorEvent(Event):
    """Something failed; the turn goes on or ends cleanly, never crashes.

    Parameters:
        where: "reasoner" or "talker".
        category: a `ReasonerError` category, or "internal".
        message: a human-readable message without secrets.
    """

    where: str = "reasoner"
    category: str = "unknown"
    message: str = ""


@_register
@dataclass(frozen=True)
class AudioHeard(Event):
    """Voice mode: one sentence of a phrase was played to the listener (or cut short by barge-in).

    Emitted once the sentence is over, so only audio that was actually heard is on record.

    Parameters:
        phrase_index: the phrase the sentence belongs to.
        seq: the sentence's position in the phrase's audio.
        start_ms, end_ms: when it played, in ms since the turn started (the engine's clock).
        text: what was heard (a cut sentence: the words up to where playback stopped).
        cut: True when barge-in (or Stop) stopped it before its end.
    """

    phrase_index: int = 0
    seq: int = 0
    start_ms: float = 0.0
    end_ms: float = 0.0
    text: str = ""
    cut: bool = False


@_register
@dataclass(frozen=True)
class VoiceMetrics(Event):
    """Voice mode: the turn's speech latencies, emitted just before `TurnEnded` (None = not measured).

    Parameters:
        asr_ms: the user's audio -> transcript, on the server.
        audio_s: length of the user's utterance.
        endpoint_ms: the silence the browser waited for before deciding the user had finished.
        eos_to_transcript_ms: end of speech (the browser's decision) -> transcript (server side).
        voice_to_voice_ms: end of speech -> first audio of the reply played (as the browser measured it
            when it reported, else estimated on the server).
        voiced_first_ms: turn start (transcript) -> first audio played (the authors' "voiced first response").
        tts_first_byte_ms: per phrase, its first sentence's text -> first synthesized audio.
        dead_air_ms: silences over 300 ms between the pieces of the turn's audio.
        pacing: "audio" or "text", the filler schedule the turn ran with.
    """

    asr_ms: float | None = None
    audio_s: float | None = None
    endpoint_ms: float | None = None
    eos_to_transcript_ms: float | None = None
    voice_to_voice_ms: float | None = None
    voiced_first_ms: float | None = None
    tts_first_byte_ms: list = dataclasses.field(default_factory=list)
    dead_air_ms: list = dataclasses.field(default_factory=list)
    pacing: str = "text"


@_register
@dataclass(frozen=True)
class TurnEnded(Event):
    """The turn is over; always the last event of a turn.

    Parameters:
        reason: "done", "cancelled", "timeout" or "error".
        reply: everything the Talker said this turn, joined by spaces; in voice mode what the listener
            heard (cut where playback stopped), which is also what the next turn's Talker sees.
    """

    reason: str = "done"
    reply: str = ""


PHRASE_SOURCES = ("sil", "chunk", "error")
END_REASONS = ("done", "cancelled", "timeout", "error")
