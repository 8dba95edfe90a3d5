"""Typed, validated engine settings; CLI flags (and app controls) are generated from these fields.

Each field's `metadata["help"]` is the one description of that setting. A settings change applies to the
next turn: a running turn keeps the config it started with.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError


def opt(default: Any, help: str, lo: float | None = None, hi: float | None = None, flag: str | None = None):
    """A dataclass field with a description and optional bounds (checked by `check_bounds`)."""
    return field(default=default, metadata={"help": help, "lo": lo, "hi": hi, "flag": flag})


PACINGS = ("audio", "text")


@dataclass(frozen=True)
class EngineConfig:
    """How a turn is scheduled."""

    silence_s: float = opt(1.0, "d: inject another <sil> filler when nothing arrived for this many seconds "
                                "and the Talker is idle", 0.05, 60.0, flag="--silence")
    max_fillers: int = opt(3, "most <sil> fillers in one turn (the first one included)", 0, 20)
    turn_timeout_s: float = opt(60.0, "end the turn (reason 'timeout') after this many seconds", 1.0, 3600.0)
    reasoner_timeout_s: float = opt(20.0, "treat the Reasoner as dead when it sends nothing for this long",
                                    0.5, 600.0)
    max_phrases: int = opt(24, "most phrases the Talker says in one turn", 1, 200)
    max_phrase_tokens: int = opt(48, "token cap for one phrase", 4, 512)
    history_turns: int = opt(6, "previous turns the Reasoner sees (the Talker always sees one)", 0, 100)
    max_user_chars: int = opt(4000, "longest accepted user message, in characters", 1, 100_000)
    filler_pacing: str = opt("audio", "voice mode: 'audio' says a <sil> filler only when the listener's audio "
                                      "would otherwise run dry (d is then a floor); 'text' uses d alone",
                             flag="--filler-pacing")
    filler_lead_s: float = opt(0.6, "voice mode, audio pacing: start a filler this long before the audio runs "
                                    "dry (covers its first token and its speech synthesis)", 0.0, 10.0)
    error_phrase: str = opt("Sorry, I can't reach my knowledge source right now, so I can't give you a "
                            "reliable answer.", "what the Talker says when the Reasoner fails before any "
                            "knowledge arrived")
    partial_error_phrase: str = opt("Sorry, I lost my knowledge source, so that answer may be incomplete.",
                                    "what the Talker says when the Reasoner fails after some knowledge")

    def __post_init__(self) -> None:
        check_bounds(self)
        if self.filler_pacing not in PACINGS:
            raise ConfigError(f"EngineConfig.filler_pacing={self.filler_pacing!r}: choose one of {', '.join(PACINGS)}")


def check_bounds(obj: Any) -> None:
    """Raise ConfigError for any field outside its declared bounds."""
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        lo, hi = f.metadata.get("lo"), f.metadata.get("hi")
        if lo is not None and v < lo or hi is not None and v > hi:
            raise ConfigError(f"{type(obj).__name__}.{f.name}={v!r} is outside [{lo}, {hi}]")


def add_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add one `--flag` per field of dataclass `cls`, with its help text and default."""
    for f in dataclasses.fields(cls):
        flag = f.metadata.get("flag") or "--" + f.name.replace("_", "-")
        parser.add_argument(flag, dest=f.name, type=type(f.default), default=f.default,
                            help=f"{f.metadata.get('help', '')} (default: {f.default})")


def from_arguments(cls: type, ns: argparse.Namespace):
    """Build `cls` from the namespace filled by `add_arguments`."""
    return cls(**{f.name: getattr(ns, f.name) for f in dataclasses.fields(cls)})
