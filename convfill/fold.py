"""One fold of a turn's events into what the turn said: its chunks, its phrases (with their times) and its end.

Every reader of a turn folds the same way through `TurnFold`: the latency metrics (`convfill.metrics`), the
Chat tab's messages and timeline (`convfill.ui.view`, `convfill.ui.timeline`), the turn log
(`convfill.turnlog`) and evaluation (`convfill.eval.entail`, `convfill.eval.naturalness`). `apply` is
incremental, so a live view folds event by event; `TurnFold.of(events)` folds a finished list.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from .events import (AudioHeard, ChunkArrived, ErrorEvent, Event, FirstToken, PhraseDelta, PhraseEnded,
                     PhraseStarted, ReasonerEnded, TurnEnded, TurnStarted, VoiceMetrics)
from .nli import NLIPair, premise_for


def persisted(events: Iterable[Event]) -> list[Event]:
    """The events a turn is stored with: all but the token deltas (each `PhraseEnded` holds the whole text)."""
    return [e for e in events if not isinstance(e, PhraseDelta)]


@dataclass
class PhraseRecord:
    """One Talker phrase: where it came from, when it started, got its first token and ended, what it said.

    `text` grows with the deltas while the phrase runs and is the final text once it ended.
    """

    index: int
    source: str  # "sil" | "chunk" | "error"
    chunk_index: int | None
    started_ms: float | None  # None: the log holds only its end (no PhraseStarted)
    first_token_ms: float | None = None
    ended_ms: float | None = None
    text: str = ""
    n_tokens: int | None = None
    cancelled: bool = False

    @property
    def ended(self) -> bool:
        return self.ended_ms is not None


@dataclass
class TurnFold:
    """A turn as far as its events go (see the module docstring)."""

    start: TurnStarted | None = None
    chunks: dict[int, ChunkArrived] = field(default_factory=dict)
    phrases: dict[int, PhraseRecord] = field(default_factory=dict)
    errors: list[ErrorEvent] = field(default_factory=list)
    heard: list[AudioHeard] = field(default_factory=list)
    reasoner_end: ReasonerEnded | None = None
    end: TurnEnded | None = None
    voice: VoiceMetrics | None = None
    last_ms: float = 0.0  # the latest time any event (or heard audio) reached

    @classmethod
    def of(cls, events: Iterable[Event] | TurnFold) -> TurnFold:
        """The fold of `events`; a fold is returned as it is (the live view hands its own to the renderers)."""
        if isinstance(events, TurnFold):
            return events
        fold = cls()
        for ev in events:
            fold.apply(ev)
        return fold

    def apply(self, ev: Event) -> None:
        self.last_ms = max(self.last_ms, ev.t_ms)
        if isinstance(ev, TurnStarted):
            self.start = ev
        elif isinstance(ev, ChunkArrived):
            self.chunks[ev.chunk_index] = ev
        elif isinstance(ev, PhraseStarted):
            self.phrases[ev.phrase_index] = PhraseRecord(ev.phrase_index, ev.source, ev.chunk_index, ev.t_ms)
        elif isinstance(ev, FirstToken) and ev.phrase_index in self.phrases:
            self.phrases[ev.phrase_index].first_token_ms = ev.t_ms
        elif isinstance(ev, PhraseDelta) and ev.phrase_index in self.phrases:
            self.phrases[ev.phrase_index].text += ev.text
        elif isinstance(ev, PhraseEnded):
            p = self.phrases.get(ev.phrase_index)
            if p is None:  # a log without its PhraseStarted (hand-made, foreign): the end still says what was said
                p = self.phrases[ev.phrase_index] = PhraseRecord(ev.phrase_index, ev.source, ev.chunk_index, None)
            p.ended_ms, p.text, p.n_tokens, p.cancelled = ev.t_ms, ev.text, ev.n_tokens, ev.cancelled
        elif isinstance(ev, AudioHeard):
            self.heard.append(ev)
            self.last_ms = max(self.last_ms, ev.end_ms)
        elif isinstance(ev, ErrorEvent):
            self.errors.append(ev)
        elif isinstance(ev, ReasonerEnded):
            self.reasoner_end = ev
        elif isinstance(ev, TurnEnded):
            self.end = ev
        elif isinstance(ev, VoiceMetrics):
            self.voice = ev

    @property
    def user(self) -> str:
        return self.start.user if self.start else ""

    def ordered(self) -> list[PhraseRecord]:
        """Every phrase so far, in order."""
        return [self.phrases[i] for i in sorted(self.phrases)]

    def ended_phrases(self) -> list[PhraseRecord]:
        """The phrases that ended (done or cut), in order."""
        return [p for p in self.ordered() if p.ended]

    def chunk_text(self, p: PhraseRecord) -> str | None:
        """The knowledge chunk phrase `p` was made from (None for fillers and error phrases)."""
        c = self.chunks.get(p.chunk_index) if p.source == "chunk" and p.chunk_index is not None else None
        return c.text if c else None

    def nli_pairs(self) -> list[tuple[PhraseRecord, NLIPair]]:
        """The judge's input for each ended Talker phrase with text (`convfill.nli.premise_for`): knowledge
        phrases whose chunk is in the turn, and fillers; the earlier phrases are every phrase said before."""
        out, earlier = [], []
        for p in self.ended_phrases():
            if not p.text:
                continue
            knowledge = self.chunk_text(p)
            if p.source == "sil" or (p.source == "chunk" and knowledge is not None):
                out.append((p, premise_for(p.text, user=self.user, knowledge=knowledge, earlier=earlier)))
            earlier.append(p.text)
        return out
