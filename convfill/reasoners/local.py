"""The local Reasoner: a llama.cpp model prompted as a concise knowledge source, fully offline.

It defaults to the shipped SmolLM2-135M GGUF, so its facts are weak; it exists so the whole pipeline (and
the app) runs with no network. `delay_s` simulates a remote model's network latency before the first token.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from ..aio import iterate_in_thread
from ..clock import Clock, MonotonicClock
from ..errors import ReasonerError
from ..talkers.probe import llamacpp_status
from .base import DIRECT_SYSTEM_PROMPT, KNOWLEDGE_SYSTEM_PROMPT, Reasoner, ReasonerRequest, ReasonerSpec


class LocalReasoner(Reasoner):
    """Knowledge from a local GGUF chat model.

    Args:
        model_path: GGUF file; None = the shipped SmolLM2-135M-Instruct.
        delay_s: simulated network delay before streaming starts.
        max_tokens: answer length cap.
        n_threads: CPU threads for this model (1 by default, leaving cores to the Talker).
        system: the knowledge-source instruction.
        clock: time source for the delay.
    """

    name = "local"

    def __init__(self, model_path: str | Path | None = None, *, delay_s: float = 0.0, max_tokens: int = 120,
                 n_threads: int = 1, system: str = KNOWLEDGE_SYSTEM_PROMPT, temperature: float = 0.0,
                 clock: Clock | None = None):
        from ..talkers.llamacpp import default_gguf_path, load_llama

        path = Path(model_path) if model_path else default_gguf_path()
        self.model = path.name
        self.delay_s, self.max_tokens, self.system, self.temperature = delay_s, max_tokens, system, temperature
        self.clock = clock or MonotonicClock()
        self.llm = load_llama(path, n_ctx=2048, n_threads=n_threads)
        self._lock = threading.Lock()

    @classmethod
    def from_spec(cls, spec: ReasonerSpec) -> "LocalReasoner":
        """Takes model (a GGUF path), delay_s, direct and max_tokens."""
        extra = {"max_tokens": spec.max_tokens} if spec.max_tokens else {}
        return cls(spec.model.strip() or None, delay_s=spec.delay_s or 0.0,
                   system=DIRECT_SYSTEM_PROMPT if spec.direct else KNOWLEDGE_SYSTEM_PROMPT, **extra)

    def with_delay(self, delay_s: float) -> "LocalReasoner":
        """A copy with its own simulated delay that shares the loaded model and its lock (one per session)."""
        mine = copy.copy(self)
        mine.delay_s = delay_s
        return mine

    def _generate(self, messages: list[dict], stop: threading.Event) -> Iterator[str]:
        with self._lock:
            try:
                for part in self.llm.create_chat_completion(messages=messages, stream=True,
                                                            max_tokens=self.max_tokens,
                                                            temperature=self.temperature):
                    if stop.is_set():
                        return
                    delta = part["choices"][0]["delta"].get("content")
                    if delta:
                        yield delta
            except ValueError as e:  # llama.cpp raises ValueError when the prompt exceeds the context
                raise ReasonerError(f"local model: {e}", "malformed") from e

    async def stream(self, request: ReasonerRequest) -> AsyncIterator[str]:
        if self.delay_s:
            await self.clock.sleep(self.delay_s)
        messages = request.chat_messages(self.system)
        async for delta in iterate_in_thread(lambda stop: self._generate(messages, stop)):
            yield delta

    @classmethod
    def available(cls) -> tuple[bool, str]:
        """Usable when llama.cpp runs here (its child-process probe, `talkers.probe`)."""
        st = llamacpp_status()
        return (True, "offline") if st.ok else (False, "needs llama.cpp, which cannot run here")

    def describe(self) -> dict:
        return {**super().describe(), "delay_s": self.delay_s}
