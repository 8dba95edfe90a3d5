"""Chat turns into the store as they happen, without ever blocking the event loop.

`TurnRecorder` is an engine observer: each event becomes a small write (the turn's row at TurnStarted,
each chunk and phrase as it arrives, the outcome at TurnEnded), so a crash or `kill -9` loses at most the
phrase being generated. In the app it hands those writes to a `StoreWriter`: one background thread that
writes them in order and, while another process holds the database locked, waits and retries instead of
dropping the turn (turns used to be lost after the busy timeout, and the wait stalled every visitor's
stream). A database that cannot be written at all (read-only, disk full) fails the write: the recorder
keeps the reason, the chat goes on and says "not saved".
"""

from __future__ import annotations

import atexit
import dataclasses
import logging
import queue
import threading
import time
import uuid
import weakref
from collections.abc import Callable

from ..events import ChunkArrived, Event, PhraseDelta, PhraseEnded, TurnEnded, TurnStarted
from ..fold import TurnFold
from .store import StoreError, TurnLog

log = logging.getLogger(__name__)
_STOP = object()


def _is_locked(e: Exception) -> bool:
    return isinstance(e, StoreError) and "locked" in str(e)


class StoreWriter:
    """The single writer thread of a store.

    Args:
        store: where jobs write.
        retry_s: first pause after a locked write (doubles up to `max_retry_s`); a locked write is retried
            until it succeeds or the writer is closed.
    """

    def __init__(self, store: TurnLog, retry_s: float = 0.1, max_retry_s: float = 2.0):
        self.store, self.retry_s, self.max_retry_s = store, retry_s, max_retry_s
        self._q: queue.Queue = queue.Queue()
        self._done = threading.Condition()
        self._submitted = self._finished = 0
        self._closed = False
        self.waiting_since: float | None = None  # monotonic time the current job first found the db locked
        self._thread = threading.Thread(target=self._run, name="convfill-store-writer", daemon=True)
        self._thread.start()
        _LIVE.add(self)

    def submit(self, job: Callable[[], None], on_error: Callable[[Exception], None] | None = None) -> int:
        """Queue `job` (never blocks); returns its ticket for `wait`."""
        with self._done:
            self._submitted += 1
            ticket = self._submitted
        self._q.put((job, on_error))
        return ticket

    def wait(self, ticket: int | None = None, timeout: float | None = None) -> bool:
        """Block until job `ticket` (default: every job submitted so far) is done; False on timeout."""
        with self._done:
            target = self._submitted if ticket is None else ticket
            return self._done.wait_for(lambda: self._finished >= target, timeout)

    @property
    def pending(self) -> int:
        return self._submitted - self._finished

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued (up to `timeout`), then stop."""
        if not self._closed:
            self._closed = True
            self._q.put((_STOP, None))
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            job, on_error = self._q.get()
            if job is _STOP:
                return
            delay = self.retry_s
            while True:
                try:
                    job()
                    break
                except Exception as e:  # noqa: BLE001 - a failed write must not kill the writer
                    if _is_locked(e) and not self._closed:
                        self.waiting_since = self.waiting_since or time.monotonic()
                        time.sleep(delay)
                        delay = min(delay * 2, self.max_retry_s)
                        continue
                    log.warning("store write failed: %s", e)
                    if on_error is not None:
                        on_error(e)
                    break
            self.waiting_since = None
            with self._done:
                self._finished += 1
                self._done.notify_all()


_LIVE: weakref.WeakSet = weakref.WeakSet()


@atexit.register
def _drain_at_exit() -> None:  # what was said before a normal exit is written
    for w in list(_LIVE):
        w.close(timeout=5.0)


class TurnRecorder:
    """Engine observer that writes each turn to the store as it happens.

    Args:
        store: where to write.
        conversation_id: the conversation the turns belong to (created when None).
        talker, reasoner, config: descriptions stored with every turn (`describe()` dicts, no secrets).
        writer: a `StoreWriter` to write through (the app: off the event loop); None writes synchronously
            (scripts, tests).
        on_stored: called with a turn's id once the whole turn is in the store (e.g. `LiveJudge.submit`).
        owner: who the conversations belong to (`labeling.roles.Identity.owner`), stored in their meta.
    """

    def __init__(self, store: TurnLog, conversation_id: str | None = None, talker: dict | None = None,
                 reasoner: dict | None = None, config: dict | None = None, source: str = "chat",
                 writer: StoreWriter | None = None, on_stored: Callable[[str], None] | None = None,
                 owner: str | None = None):
        self.store, self.writer, self.source, self.on_stored, self.owner = store, writer, source, on_stored, owner
        self.talker, self.reasoner, self.config = talker, reasoner, config
        self._events: list[Event] = []
        self._fold = TurnFold()
        self.last_turn_id: str | None = None
        self.error: str | None = None  # why a write of the current turn failed
        self._last_ticket = 0
        self.conversation_id = conversation_id or self.new_conversation()

    def new_conversation(self) -> str:
        """A new conversation id; its row is written like everything else (never on the caller's thread)."""
        cid = uuid.uuid4().hex
        meta = {"owner": self.owner} if self.owner else None
        self._write(lambda: self.store.new_conversation(self.source, meta, conversation_id=cid))
        self.conversation_id = cid
        return cid

    def __call__(self, ev: Event) -> None:
        if isinstance(ev, PhraseDelta):  # not persisted (`convfill.fold.persisted`): PhraseEnded has the text
            return
        if isinstance(ev, TurnStarted):
            self._events, self._fold = [], TurnFold()
            self.error = None  # a failed write is reported for its turn, even if later writes succeed
            self.last_turn_id = ev.turn_id
            cid, talker, reasoner, config = self.conversation_id, self.talker, self.reasoner, self.config
            self._write(lambda: self.store.begin_turn(cid, ev, talker, reasoner, config))
        self._events.append(ev)
        self._fold.apply(ev)
        tid = self.last_turn_id
        if tid is None:
            return
        if isinstance(ev, ChunkArrived):
            self._write(lambda: self.store.add_chunk(tid, ev))
        elif isinstance(ev, PhraseEnded):
            phrase = dataclasses.replace(self._fold.phrases[ev.phrase_index])  # a copy: the write runs later
            self._write(lambda: self.store.add_phrase(tid, phrase))
        elif isinstance(ev, TurnEnded):
            events = list(self._events)

            def end():
                self.store.end_turn(tid, events)
                if self.on_stored is not None:
                    self.on_stored(tid)
            self._write(end)

    def _failed(self, e: Exception) -> None:
        self.error = str(e)

    def _write(self, job: Callable[[], None]) -> None:
        if self.writer is None:
            try:
                job()
            except Exception as e:
                self._failed(e)
                raise
            return
        self._last_ticket = self.writer.submit(job, self._failed)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until everything recorded so far is written (or failed); False on timeout."""
        return True if self.writer is None else self.writer.wait(self._last_ticket, timeout)
