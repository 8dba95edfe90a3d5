"""A Talker's independent caches ("slots"): a phrase holds one from its first token to its last.

With one cache, switching between visitors throws the cached prompt away and phrases must run one after
another. llama.cpp can hold several contexts on one loaded model (each adds its KV cache and compute buffers,
measured in docs/benchmarks.md): a phrase in each, stepped token by token on the model thread
(`convfill.aio.iterate_in_steps`), so a newcomer's first words need not wait for anyone's phrase to end.
Up to a limit, a new slot is made when every one is busy (the app makes them at start-up, `Talker.reserve`).
Each cache remembers which visitor last used it (`VISITOR`), so visitors who take turns keep their own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextvars import ContextVar

# Who a phrase or prefill is for (one per chat session, set by `Engine`): a Talker's phrases inherit it from the
# turn's task. A runtime that caches prompts keeps each visitor's cache for that visitor while others are free.
VISITOR: ContextVar[object | None] = ContextVar("convfill_visitor", default=None)

# choose(free slot indexes, how many exist, the limit) -> a free index, `size` to make a new one, or None.
Choose = Callable[[list[int], int, int], "int | None"]


def first_free(free: list[int], size: int, limit: int) -> int | None:
    """Any free slot, else a new one while under the limit (runtimes with no cache to match against)."""
    if free:
        return free[0]
    return size if size < limit else None


class Slots:
    """Which caches are busy; who waits for one. Thread-safe; `take` never blocks."""

    def __init__(self, limit: int = 1) -> None:
        if limit < 1:
            raise ValueError("a Talker needs at least one cache")
        self.limit, self.size = limit, 0
        self._busy: set[int] = set()
        self._waiting: list[Callable[[], None]] = []
        self._cond = threading.Condition()

    def take(self, choose: Choose = first_free, resume: Callable[[], None] | None = None) -> int | None:
        """A slot for one phrase or prefill, or None when none is free and no more may be made; then
        `resume` (if given) is called once one frees, on the thread that frees it."""
        with self._cond:
            free = [i for i in range(self.size) if i not in self._busy]
            slot = choose(free, self.size, self.limit) if free or self.size < self.limit else None
            if slot is None:
                if resume is not None:
                    self._waiting.append(resume)
                return None
            if slot == self.size:
                self.size += 1
            self._busy.add(slot)
            return slot

    def give(self, slot: int) -> None:
        with self._cond:
            self._busy.discard(slot)
            waiting, self._waiting = self._waiting, []
            self._cond.notify_all()
        for resume in waiting:  # each queues itself again in its own place; those that lose wait again
            resume()

    def busy(self) -> int:
        with self._cond:
            return len(self._busy)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no slot is held (a phrase stops within one token of its `stop`)."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._busy, timeout)

    def holding(self, slot: int, it: Iterator) -> "Held":
        return Held(self, slot, it)


class Held:
    """An iterator that gives its slot back when it ends, fails or is closed (even before it started)."""

    def __init__(self, slots: Slots, slot: int, it: Iterator) -> None:
        self.slots, self.slot, self.it, self._open = slots, slot, it, True

    def __iter__(self) -> "Held":
        return self

    def __enter__(self) -> "Held":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __next__(self):
        try:
            return next(self.it)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._open:
            self._open = False
            try:
                close = getattr(self.it, "close", None)
                if close is not None:
                    close()
            finally:
                self.slots.give(self.slot)
