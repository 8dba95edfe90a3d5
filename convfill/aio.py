"""Bridges between blocking model code and the asyncio engine.

Model runtimes (llama.cpp, torch) block while they compute. `iterate_in_thread` runs such an iterator on a
worker thread and hands items to the event loop, and a `threading.Event` tells the worker to stop: closing
or cancelling the async side stops generation within one token instead of letting it run to completion.
`iterate_in_steps` does the same one item per task on a `ModelThread`, so phrases can take turns.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import TypeVar

from .clock import Clock

T = TypeVar("T")
_DONE = object()

# What waits for a Talker's model thread goes in this order (then first come, first served):
FIRST = 0        # a turn's first phrase: the visitor hears nothing until it comes
KNOWLEDGE = 1    # a phrase made from a knowledge chunk that is waiting
STREAMING = 2    # the next token of a phrase already speaking (round robin among them)
LATER = 3        # a later filler, and anything submitted without a priority
SPECULATIVE = 4  # warm-ups and prefills while someone types: when no phrase waits, or once they are old
# Work below STREAMING that has waited this long goes next, before streaming tokens (only first words and
# knowledge phrases still go ahead): under steady load from other visitors it would otherwise never run.
AGE_S = 0.5


class _PriorityWork(queue.PriorityQueue):
    """`ThreadPoolExecutor`'s work queue in (priority, place in line) order; the pool's stop marker goes last."""

    def __init__(self, age_s: float = AGE_S) -> None:
        super().__init__()
        self.place: tuple[int, int] = (LATER, 0)  # of the next `put` (set by `ModelThread` under its lock)
        self.tickets = itertools.count()
        self.age_s = age_s
        self._tie = itertools.count()

    def _put(self, item) -> None:
        place = self.place if item is not None else (SPECULATIVE + 1, next(self.tickets))
        heapq.heappush(self.queue, (*place, next(self._tie), time.monotonic(), item))

    def _get(self):
        if self.queue[0][0] >= STREAMING:  # nobody's first words wait: is low-priority work overdue?
            old = time.monotonic() - self.age_s
            overdue = [i for i, (prio, _, _, since, item) in enumerate(self.queue)
                       if prio > STREAMING and item is not None and since <= old]
            if overdue:
                i = min(overdue, key=lambda i: self.queue[i][1])  # the longest waiting
                entry = self.queue[i]
                self.queue[i] = self.queue[-1]
                self.queue.pop()
                heapq.heapify(self.queue)
                return entry[-1]
        return heapq.heappop(self.queue)[-1]


class ModelThread(ThreadPoolExecutor):
    """The one long-lived thread that runs every call into a model, taking waiting work by priority.

    Sessions share one Talker: with first come, first served, a visitor's first words waited behind other
    visitors' phrases (issue "Many visitors at once"). What waits is taken `FIRST`, `KNOWLEDGE`, `STREAMING`,
    `LATER`, then `SPECULATIVE`, each in arrival order, except that work below `STREAMING` waiting longer
    than `age_s` goes before streaming tokens (so steady load cannot starve it). A phrase is stepped one
    token per task (`iterate_in_steps`): between two tokens of one visitor's phrase the thread takes another
    visitor's first words, and phrases that hold separate caches take turns token by token.
    It is a `ThreadPoolExecutor` so the interpreter joins it at exit like any other pool. With `workers` > 1
    it orders requests to a server the same way (`RemoteTalker`: phrases in flight at once).
    """

    def __init__(self, thread_name_prefix: str = "convfill-model", workers: int = 1,
                 age_s: float = AGE_S) -> None:
        super().__init__(max_workers=workers, thread_name_prefix=thread_name_prefix)
        self._work_queue = _PriorityWork(age_s)
        self._submit_lock = threading.Lock()

    def submit(self, fn, /, *args, **kwargs) -> Future:
        return self.submit_at(LATER, fn, *args, **kwargs)

    def submit_at(self, priority: int, fn, /, *args, **kwargs) -> Future:
        return self.submit_in_place(self.place(priority), fn, *args, **kwargs)

    def place(self, priority: int) -> tuple[int, int]:
        """A place in line at `priority`, behind everything that asked before. Work that has to wait for a
        free cache keeps its place and is queued in it again when one frees."""
        return priority, next(self._work_queue.tickets)

    def submit_in_place(self, place: tuple[int, int], fn, /, *args, **kwargs) -> Future:
        with self._submit_lock:
            self._work_queue.place = place
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
        async for item in _drain(q):
            yield item
    finally:
        stop.set()  # cancellation or early close: the worker drops out after its current token


async def _drain(q: asyncio.Queue) -> AsyncIterator:
    """Items a worker hands over until `_DONE` (its exception re-raised here)."""
    while True:
        item = await q.get()
        if item is _DONE:
            return
        if isinstance(item, BaseException):
            raise item
        yield item


Start = Callable[[threading.Event, Callable[[], None]], "Iterator[T] | None"]


async def iterate_in_steps(start: Start, thread: ModelThread, priority: int) -> AsyncIterator[T]:
    """Yield the items of the iterator `start(stop, resume)` returns, one item per task on `thread`.

    The first item waits at `priority`; every later one at `STREAMING`, behind whatever waits ahead of it
    (another visitor's first words), round robin with other phrases. `start` runs on the thread at the first
    step; it returns None when the iterator cannot start yet (every cache is busy) and then calls `resume()`
    once one frees, which queues the first step again in its original place. Setting `stop` (closing or
    cancelling the async side) closes the iterator on the thread at its next step, within one token; at
    interpreter exit a step that can no longer be queued closes it the same way.
    """
    loop = asyncio.get_running_loop()
    q: asyncio.Queue = asyncio.Queue()
    stop = threading.Event()
    place = thread.place(priority)
    held: list = []  # the running iterator, once started

    def put(item) -> None:
        try:
            loop.call_soon_threadsafe(q.put_nowait, item)
        except RuntimeError:  # loop already closed: nobody is listening any more
            pass

    def end(item=_DONE) -> None:
        if held:
            try:
                held.pop().close()
            except BaseException as e:  # noqa: BLE001 - reported below unless something already is
                item = e if item is _DONE else item
        put(item)
        if item is not _DONE:
            put(_DONE)

    def step() -> None:
        try:
            if stop.is_set():
                return end()
            if not held:
                it = start(stop, resume)
                if it is None:
                    return  # parked: `resume` queues this step again when a cache frees
                held.append(it)
            item = next(held[0])
        except StopIteration:
            return end()
        except BaseException as e:  # handed to the loop and re-raised there
            return end(e)
        put(item)
        queue_step(thread.place(STREAMING))

    def queue_step(at) -> None:
        try:
            thread.submit_in_place(at, step)
        except RuntimeError:  # the pool is shutting down (interpreter exit): stop here
            end()

    def resume() -> None:
        queue_step(place)

    queue_step(place)
    try:
        async for item in _drain(q):
            yield item
    finally:
        stop.set()  # cancellation or early close: the iterator is closed at its next step


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
