"""The replay Reasoner: streams recorded knowledge chunks at their recorded times.

Record a real API session once (the store keeps every chunk with its arrival time; `python -m labeling
export --format replay` writes them out) and replay it offline, for demos and evaluations with a real
Reasoner's wording and pacing but no network and no key. One JSON object per line:

    {"user": "Who wrote Pride and Prejudice?", "chunks": [{"t_ms": 812.0, "text": "Jane Austen did."}, ...]}

A request is answered by the recording whose user text matches it (case and spacing aside); with
`in_order=True` by the next recording in the file, whatever was asked. Times are relative to the start of
the stream, divided by `speed`, on the injected clock.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

from ..clock import Clock, MonotonicClock
from ..errors import ConfigError, ReasonerError
from .base import Reasoner, ReasonerRequest, ReasonerSpec


def _key(text: str) -> str:
    return " ".join(text.casefold().split())


def read_recording(path: str | Path) -> list[dict]:
    """The recorded turns of a replay JSONL file; ConfigError naming the line for anything malformed."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise ConfigError(f"cannot read the replay recording {path.name}: {e.strerror}") from None
    turns = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            chunks = [(float(c["t_ms"]), str(c["text"])) for c in obj["chunks"]]
            turns.append({"user": str(obj["user"]), "chunks": sorted(chunks)})
        except (ValueError, KeyError, TypeError) as e:
            raise ConfigError(f"{path.name} line {n}: not a replay record ({type(e).__name__}: {e})") from None
    if not turns:
        raise ConfigError(f"the replay recording {path.name} holds no turns")
    return turns


class ReplayReasoner(Reasoner):
    """Args:
        recording: a replay JSONL file (or its parsed turns).
        speed: 2.0 replays twice as fast.
        in_order: answer each request with the next recording instead of the one asked the same.
        clock: time source for the waits.
    """

    name = "replay"

    def __init__(self, recording: str | Path | list[dict], *, speed: float = 1.0, in_order: bool = False,
                 clock: Clock | None = None):
        if speed <= 0:
            raise ConfigError("replay speed must be > 0")
        self.turns = read_recording(recording) if isinstance(recording, (str, Path)) else list(recording)
        self.model = Path(recording).name if isinstance(recording, (str, Path)) else "recording"
        self.speed, self.in_order = speed, in_order
        self.clock = clock or MonotonicClock()
        self._next = 0

    @classmethod
    def from_spec(cls, spec: ReasonerSpec) -> "ReplayReasoner":
        """Takes model (the recording's path)."""
        if not spec.model.strip():
            raise ConfigError("The replay Reasoner needs a recording: put its path in the model box "
                              "(make one with `python -m labeling export --format replay`).")
        return cls(spec.model.strip())

    def _turn_for(self, user: str) -> dict:
        if self.in_order:
            turn = self.turns[self._next % len(self.turns)]
            self._next += 1
            return turn
        for turn in self.turns:
            if _key(turn["user"]) == _key(user):
                return turn
        raise ReasonerError(f"the recording {self.model} has no turn for this message", "unknown")

    async def stream(self, request: ReasonerRequest) -> AsyncIterator[str]:
        turn = self._turn_for(request.user)
        t0 = self.clock.now_ms()
        for t_ms, text in turn["chunks"]:
            wait = (t_ms / self.speed - (self.clock.now_ms() - t0)) / 1000.0
            if wait > 0:
                await self.clock.sleep(wait)
            # one chunk per recorded chunk: the engine's chunker sees a finished sentence each time
            yield text.rstrip() + "\n"

    def describe(self) -> dict:
        return {**super().describe(), "speed": self.speed, "in_order": self.in_order}
