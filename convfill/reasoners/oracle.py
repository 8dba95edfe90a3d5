"""The oracle Reasoner: streams given knowledge text with a configurable latency profile.

Evaluation uses it to measure a Talker's knowledge retention with a perfect Reasoner, offline, and the
app uses it to make latency hiding visible without any model. Delays run on the injected clock.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from ..chunker import knowledge_chunks
from ..clock import Clock, MonotonicClock
from ..errors import ConfigError
from .base import Reasoner, ReasonerRequest, ReasonerSpec


class OracleReasoner(Reasoner):
    """Streams `knowledge` sentence by sentence.

    Args:
        knowledge: the text to stream (required before the first turn; see `with_knowledge`).
        first_chunk_s: delay before the first sentence (the simulated Reasoner TTFT).
        gap_s: delay between sentences.
        clock: time source for the delays.
    """

    name = "oracle"
    model = "oracle"

    def __init__(self, knowledge: str | None = None, first_chunk_s: float = 0.5, gap_s: float = 0.3,
                 clock: Clock | None = None):
        if first_chunk_s < 0 or gap_s < 0:
            raise ConfigError("oracle delays must be >= 0")
        self.knowledge, self.first_chunk_s, self.gap_s = knowledge, first_chunk_s, gap_s
        self.clock = clock or MonotonicClock()

    @classmethod
    def from_spec(cls, spec: ReasonerSpec) -> "OracleReasoner":
        """Takes knowledge, delay_s (first chunk) and gap_s."""
        opts = {k: v for k, v in (("first_chunk_s", spec.delay_s), ("gap_s", spec.gap_s)) if v is not None}
        return cls(spec.knowledge, **opts)

    def with_knowledge(self, knowledge: str) -> "OracleReasoner":
        """A copy streaming other knowledge with the same latency profile."""
        return OracleReasoner(knowledge, self.first_chunk_s, self.gap_s, self.clock)

    async def stream(self, request: ReasonerRequest) -> AsyncIterator[str]:
        if not self.knowledge:
            raise ConfigError("The oracle Reasoner needs knowledge text (--knowledge).")
        for i, sentence in enumerate(knowledge_chunks(self.knowledge)):
            await self.clock.sleep(self.first_chunk_s if i == 0 else self.gap_s)
            yield sentence + " "

    def describe(self) -> dict:
        return {**super().describe(), "first_chunk_s": self.first_chunk_s, "gap_s": self.gap_s}
