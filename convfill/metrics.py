"""Latency metrics of a turn (from its `convfill.fold.TurnFold`): the one place each latency formula exists.

The CLI, the app's metrics panel, the benchmark and the evaluation harness all call `turn_metrics`.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

from .events import Event
from .fold import TurnFold


@dataclass(frozen=True)
class TurnMetrics:
    """Per-turn latencies in ms (None when the turn never got there).

    Parameters:
        talker_ttft_ms: turn start -> first token of the first phrase.
        reasoner_first_chunk_ms: turn start -> first knowledge chunk.
        first_knowledge_phrase_ms: turn start -> first token of the first phrase made from a chunk.
        chunk_to_phrase_lag_ms: mean of chunk arrival -> start of the phrase made from it.
        n_fillers: phrases generated from `<sil>`.
        n_knowledge_phrases: phrases generated from chunks.
        n_chunks: knowledge chunks received.
        total_ms: turn start -> turn end.
        end_reason: why the turn ended.
        voice_to_voice_ms: voice mode: end of the user's speech -> first audio of the reply played.
        voiced_first_ms: voice mode: turn start (transcript) -> first audio played.
        asr_ms: voice mode: the user's audio -> transcript.
        dead_air_ms: voice mode: total of the silences over 300 ms inside the reply's audio (0 when none).
    """

    talker_ttft_ms: float | None
    reasoner_first_chunk_ms: float | None
    first_knowledge_phrase_ms: float | None
    chunk_to_phrase_lag_ms: float | None
    n_fillers: int
    n_knowledge_phrases: int
    n_chunks: int
    total_ms: float | None
    end_reason: str | None
    voice_to_voice_ms: float | None = None
    voiced_first_ms: float | None = None
    asr_ms: float | None = None
    dead_air_ms: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def turn_metrics(events: Iterable[Event] | TurnFold) -> TurnMetrics:
    """`TurnMetrics` of one turn: its events in emission order, or their `TurnFold`."""
    f = TurnFold.of(events)
    chunk_at = {i: c.t_ms for i, c in f.chunks.items()}
    phrases = f.ordered()
    ended = f.ended_phrases()
    lags = [p.started_ms - chunk_at[p.chunk_index] for p in phrases
            if p.source == "chunk" and p.chunk_index in chunk_at and p.started_ms is not None]
    knowledge_first = [p.first_token_ms for p in phrases if p.source == "chunk" and p.first_token_ms is not None]
    first = f.phrases.get(0)
    voice, end = f.voice, f.end
    return TurnMetrics(
        talker_ttft_ms=first.first_token_ms if first else None,
        reasoner_first_chunk_ms=min(chunk_at.values()) if chunk_at else None,
        first_knowledge_phrase_ms=min(knowledge_first) if knowledge_first else None,
        chunk_to_phrase_lag_ms=round(statistics.fmean(lags), 3) if lags else None,
        n_fillers=sum(1 for p in ended if p.source == "sil"),
        n_knowledge_phrases=sum(1 for p in ended if p.source == "chunk"),
        n_chunks=len(chunk_at),
        total_ms=end.t_ms if end else None,
        end_reason=end.reason if end else None,
        voice_to_voice_ms=voice.voice_to_voice_ms if voice else None,
        voiced_first_ms=voice.voiced_first_ms if voice else None,
        asr_ms=voice.asr_ms if voice else None,
        dead_air_ms=round(sum(voice.dead_air_ms), 1) if voice else None,
    )


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (q in [0, 100]) of the non-None values; None when empty."""
    xs = sorted(v for v in values if v is not None)
    if not xs:
        return None
    k = (len(xs) - 1) * q / 100.0
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def summarize(values: Sequence[float | None]) -> dict:
    """mean, std, p50, p95 and n of the non-None values (the columns of every latency table)."""
    xs = [v for v in values if v is not None]
    return {
        "n": len(xs),
        "mean": round(statistics.fmean(xs), 3) if xs else None,
        "std": round(statistics.pstdev(xs), 3) if xs else None,
        "p50": percentile(xs, 50),
        "p95": percentile(xs, 95),
    }
