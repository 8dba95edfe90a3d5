"""Bridges between blocking model code and the asyncio engine.

Model runtimes (llama.cpp, torch) block while they compute. `iterate_in_thread` runs such an iterator on a
worker thread and hands items to the event loop, and a `threading.Event` tells the worker to stop: closing
or cancelling the async side stops generation within one token instead of letting it run to completion.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import queue
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import TypeVar

from .clock import Clock

T = TypeVar("T")
_DONE = object()

# What waits for a Talker's model thread goes in this order (then first come, first served):
FIRST = 0        # a turn's first phrase: the visitor hears nothing until it comes
KNOWLEDGE = 1    # a phrase made from a knowledge chunk that is waiting
LATER = 2        # a later filler, and anything submitted without a priority
SPECULATIVE = 3  # warm-ups and prefills while someone types: only when no phrase waits


class _PriorityWork(queue.PriorityQueue):
    """`ThreadPoolExecutor`'s work queue in (priority, arrival) order; the pool's stop marker goes last."""

    def __init__(self) -> None:
        super().__init__()
        self.priority = LATER  # of the next `put` (set by `ModelThread.submit_at` under its lock)
        self._seq = itertools.count()

    def _put(self, item) -> None:
        heapq.heappush(self.queue, (self.priority if item is not None else SPECULATIVE + 1, next(self._seq), item))

    def _get(self):
        return heapq.heappop(self.queue)[2]


class ModelThread(ThreadPoolExecutor):
    """The one long-lived thread that runs every call into a model, taking waiting work by priority.

    Sessions share one Talker: with first come, first served, a visitor's first words waited behind other
    visitors' later fillers (issue "Many visitors at once"). A phrase runs to its end once started (the
    model has one cache); what waits is taken `FIRST`, `KNOWLEDGE`, `LATER`, then `SPECULATIVE`, each in arrival
    order, so no visitor's phrase waits behind more than the phrases ahead of it in its own class.
    It is a `ThreadPoolExecutor` so the interpreter joins it at exit like any other pool.
    """

    def __init__(self, thread_name_prefix: str = "convfill-model") -> None:
        super().__init__(max_workers=1, thread_name_prefix=thread_name_prefix)
        self._work_queue = _PriorityWork()
        self._submit_lock = threading.Lock()

    def submit(self, fn, /, *args, **kwargs) -> Future:
        return self.submit_at(LATER, fn, *args, **kwargs)

    def submit_at(self, priority: int, fn, /, *args, **kwargs) -> Future:
        with self._submit_lock:
            self._work_queue.priority = priority
            return super().submit(fn, *args, **kwargs)

    def at(self, priority: int) -> "_AtPriority":
        """This thread as an `Executor`-like object whose `submit` uses `priority`."""
        return _AtPriority(self, priority)


class _AtPriority:
    def __init__(self, pool: ModelThread, priority: int) -> None:
        self.pool, self.priority = pool, priority

    def submit(self, fn, /, *args, **kwargs) -> Future:
        return self.pool.submit_at(self.priority, fn, *args, **kwargs)


async def iterate_in_thread(make_iter: Callable[[threading.Event], Iterator[T]],
                            executor: Executor | _AtPriority | None = None) -> AsyncIterator[T]:
    """Yield the items of `make_iter(stop)` produced on a worker thread; set `stop` when we stop early.

    The worker is not a daemon: at interpreter exit Python joins it (it drops out within one token once
    `stop` is set) before freeing modules. A daemon thread would still be inside llama.cpp's decode while
    the model is freed under it, a segfault at exit after a turn cut off mid-phrase. `executor` (a
    one-thread pool, also joined at exit) runs the worker on a long-lived thread instead of a new one.
    """
    loop = asyncio.get_running_loop()
    q: asyncio.Queue = asyncio.Queue()
    stop = threading.Event()

    def worker() -> None:
        try:
            if stop.is_set():  # cancelled while it waited for the model thread: do not even start
                return
            for item in make_iter(stop):
                if stop.is_set():
                    break
                loop.call_soon_threadsafe(q.put_nowait, item)
        except BaseException as e:  # handed to the loop and re-raised there
            loop.call_soon_threadsafe(q.put_nowait, e)
        finally:
            try:
                loop.call_soon_threadsafe(q.put_nowait, _DONE)
            except RuntimeError:  # loop already closed: nobody is listening any more
                pass

    if executor is None:
        threading.Thread(target=worker, daemon=False, name="convfill-gen").start()
    else:
        executor.submit(worker)
    try:
        while True:
            item = await q.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()  # cancellation or early close: the worker drops out after its current token


async def wait_or_timeout(event: asyncio.Event, clock: Clock, seconds: float | None) -> bool:
    """Wait for `event` or for `seconds` on `clock` (None: no timeout). True when the event fired."""
    if event.is_set():
        return True
    if seconds is None:
        await event.wait()
        return True
    waiter = asyncio.ensure_future(event.wait())
    sleeper = asyncio.ensure_future(clock.sleep(seconds))
    try:
        await asyncio.wait({waiter, sleeper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        sleeper.cancel()
    return event.is_set()
