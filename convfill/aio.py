"""Bridges between blocking model code and the asyncio engine.

Model runtimes (llama.cpp, torch) block while they compute. `iterate_in_thread` runs such an iterator on a
worker thread and hands items to the event loop, and a `threading.Event` tells the worker to stop: closing
or cancelling the async side stops generation within one token instead of letting it run to completion.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Executor
from typing import TypeVar

from .clock import Clock

T = TypeVar("T")
_DONE = object()


async def iterate_in_thread(make_iter: Callable[[threading.Event], Iterator[T]],
                            executor: Executor | None = None) -> AsyncIterator[T]:
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
