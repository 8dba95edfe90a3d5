"""Time as an injectable dependency.

Every timestamp the engine emits comes from a `Clock`, and every wait goes through it, so tests swap in
`FakeClock` and exercise silence intervals, caps, timeouts and pre-emption in microseconds without flakes.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time


class Clock:
    """Interface: milliseconds since the clock's epoch, and an awaitable sleep on that timeline."""

    def now_ms(self) -> float:
        raise NotImplementedError

    async def sleep(self, seconds: float) -> None:
        raise NotImplementedError


class MonotonicClock(Clock):
    """Wall time from `time.perf_counter`, epoch at construction."""

    def __init__(self) -> None:
        self._t0 = time.perf_counter()

    def now_ms(self) -> float:
        return (time.perf_counter() - self._t0) * 1000.0

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class FakeClock(Clock):
    """A virtual clock: `sleep` parks the caller until `advance` moves time past its deadline.

    With `auto=True` (the default) time jumps to the next deadline whenever every task on the loop is
    waiting, so a whole turn with scripted delays runs instantly yet in the right order.
    """

    # How many loop iterations to yield before deciding the loop is idle. Scripted fakes and the engine
    # chain a handful of queue hand-offs per step; 50 is far above what they need.
    _IDLE_SPINS = 50

    def __init__(self, start_ms: float = 0.0, auto: bool = True) -> None:
        self._now = float(start_ms)
        self._waiters: list[tuple[float, int, asyncio.Future]] = []
        self._seq = itertools.count()
        self.auto = auto
        self._ticker: asyncio.Task | None = None

    def now_ms(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        deadline = self._now + max(0.0, seconds) * 1000.0
        fut = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (deadline, next(self._seq), fut))
        if self.auto and (self._ticker is None or self._ticker.done()):
            self._ticker = asyncio.get_running_loop().create_task(self._tick())
        await fut

    def advance(self, ms: float) -> None:
        """Move time forward by `ms` and wake every sleeper whose deadline has passed."""
        self._now += ms
        while self._waiters and self._waiters[0][0] <= self._now:
            _, _, fut = heapq.heappop(self._waiters)
            if not fut.done():
                fut.set_result(None)

    async def _tick(self) -> None:
        while True:
            for _ in range(self._IDLE_SPINS):
                await asyncio.sleep(0)
            # Drop sleepers whose task was cancelled so they cannot hold time back.
            while self._waiters and self._waiters[0][2].done():
                heapq.heappop(self._waiters)
            if not self._waiters:
                return
            self.advance(self._waiters[0][0] - self._now)
